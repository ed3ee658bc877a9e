"""Geometric verification and the aligned pixel comparison, on real frames of the shared clips."""

from __future__ import annotations

import io
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from utils.verify import (FEATURES_VERSION, Features, _moved_alike, align, aligned_similarity, features,
                          features_file, forget_keyframes, keyframe_features, keyframe_layout, layout,
                          still_view_similarity, store_keyframe_features)


def frame_at(path: Path, t: float) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= t:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"{path.name}: no frame at {t} s")


@pytest.fixture(scope="module")
def as_keyframe(tmp_path_factory: pytest.TempPathFactory):
    """What Search compares a query with: a stored keyframe JPEG (480 px long side), read as Search reads it."""
    folder = tmp_path_factory.mktemp("keyframes")

    def store(rgb: np.ndarray) -> Features:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (480, round(480 * h / w)), interpolation=cv2.INTER_AREA)
        path = folder / f"{len(list(folder.iterdir()))}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        return keyframe_features(str(path))
    return store


def edited(rgb: np.ndarray) -> np.ndarray:
    """A 70 % crop, brighter and less contrasted, with a subtitle box (60 % of the width): a typical screenshot."""
    h, w = rgb.shape[:2]
    out = rgb[int(h * 0.1):int(h * 0.8), int(w * 0.2):int(w * 0.9)].astype(np.float32) * 0.8 + 40
    out = np.clip(out, 0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    cv2.rectangle(out, (w // 5, h - 40), (w - w // 5, h - 12), (0, 0, 0), -1)
    return out


@pytest.fixture(scope="module")
def rabbit(videos: Path) -> np.ndarray:
    return frame_at(videos / "mdn_rabbit_480p_h264.mp4", 3.0)


def test_edited_copy_aligns_and_its_pixels_agree(rabbit: np.ndarray, as_keyframe) -> None:
    query = features(edited(rabbit))
    kf = as_keyframe(rabbit)
    found = align(query, kf)
    assert found.inliers >= 15 and found.transform is not None
    assert aligned_similarity(query, kf, found) > 0.9


def test_same_table_other_toy_scores_lower(videos: Path, rabbit: np.ndarray, as_keyframe) -> None:
    """mdn_pig and mdn_rabbit are shot on the same table: the background aligns, the toy does not."""
    pig = features(frame_at(videos / "mdn_pig_480p_h264.mp4", 3.0))
    kf = as_keyframe(rabbit)
    assert align(pig, kf).inliers >= 15  # the table and the wall: geometry alone would call it a match
    found = align(pig, kf)
    same = aligned_similarity(features(rabbit), kf, align(features(rabbit), kf))
    other = aligned_similarity(pig, kf, found)
    assert other < 0.8 < same


def test_unrelated_pictures_do_not_align(videos: Path, rabbit: np.ndarray, as_keyframe) -> None:
    kf = as_keyframe(rabbit)
    found = align(features(frame_at(videos / "sintel_trailer_480p_h264.mp4", 20.0)), kf)
    assert found.inliers == 0 and found.transform is None
    assert aligned_similarity(features(rabbit), kf, found) == -1.0


def test_stored_features_are_what_search_reads(videos: Path, rabbit: np.ndarray, tmp_path: Path) -> None:
    """A keyframe's stored features are exactly those computed from its image, and they are read instead
    of computed: here those of another picture, stored beside the rabbit's image on purpose, are what
    comes back. Features that cannot be used (cut short, of other ORB settings) are computed again."""
    path, other = tmp_path / "000000.jpg", tmp_path / "000001.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(rabbit, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(other), cv2.cvtColor(frame_at(videos / "bikes_10s_640x272_h264.mp4", 2.0), cv2.COLOR_RGB2BGR))
    from_image = keyframe_features(str(path))
    store_keyframe_features(path)
    forget_keyframes()
    same = keyframe_features(str(path))
    assert np.array_equal(same.descriptors, from_image.descriptors) and np.array_equal(same.points, from_image.points)
    assert np.array_equal(same.small, from_image.small) and same.scale == from_image.scale

    from_other = keyframe_features(str(other))
    store_keyframe_features(other)
    features_file(other).replace(features_file(path))
    forget_keyframes()
    stored = keyframe_features(str(path))
    assert np.array_equal(stored.descriptors, from_other.descriptors) and np.array_equal(stored.points, from_other.points)
    assert not np.array_equal(stored.descriptors, from_image.descriptors)

    data = features_file(path).read_bytes()
    with np.load(io.BytesIO(data)) as stored_arrays:
        arrays = {k: stored_arrays[k] for k in stored_arrays.files}
    assert str(arrays["version"]) == FEATURES_VERSION
    other_settings = io.BytesIO()
    np.savez(other_settings, **{**arrays, "version": np.array("orb1000-fast20-side128")})
    for spoilt in (data[: len(data) // 2], other_settings.getvalue()):
        features_file(path).write_bytes(spoilt)
        forget_keyframes()
        again = keyframe_features(str(path))
        assert np.array_equal(again.descriptors, from_image.descriptors)
        assert np.array_equal(again.points, from_image.points)


def test_features_are_not_stored_for_a_removed_image(tmp_path: Path) -> None:
    """A keyframe whose video's ingest was undone (its folder removed) while the embedding thread had it."""
    gone = tmp_path / "gone" / "000000.jpg"
    store_keyframe_features(gone)
    assert not gone.parent.exists()


def still_view(tmp_path: Path, background: np.ndarray, draw, places: list, query_place) -> tuple[list, list[float] | None]:
    """Keyframes of one still view (``background`` with ``draw(picture, place)`` at each of ``places``),
    stored as JPEGs; a brighter screenshot with the thing drawn at ``query_place``, aligned to each;
    the pairs and their still_view_similarity."""
    def at(place) -> np.ndarray:
        out = background.copy()
        draw(out, place)
        return out

    paths = []
    for i, place in enumerate(places):
        paths.append(str(tmp_path / f"{i}.jpg"))
        cv2.imwrite(paths[-1], cv2.cvtColor(at(place), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    query = features(np.clip(at(query_place).astype(np.float32) * 0.8 + 40, 0, 255).astype(np.uint8))
    pairs = [(query, p, align(query, keyframe_features(p))) for p in paths]
    return pairs, still_view_similarity(pairs)


def test_a_fixed_cameras_moment_is_told_by_where_things_moved(videos: Path, rabbit: np.ndarray, tmp_path: Path) -> None:
    """Five keyframes of a fixed camera (the rabbit's table) with a textured figure (a Sintel crop) at five
    places; a brighter screenshot with the figure a little right of the third place matches the third.
    By correlation alone the figure 15 px off correlates with itself no better than with the table."""
    figure = cv2.resize(frame_at(videos / "sintel_trailer_480p_h264.mp4", 20.0)[100:260, 300:400], (40, 64))

    def draw(picture: np.ndarray, x: int) -> None:
        picture[150:214, x:x + 40] = figure

    pairs, scores = still_view(tmp_path, cv2.resize(rabbit, (480, 270), interpolation=cv2.INTER_AREA), draw,
                               [40, 120, 200, 280, 360], 215)
    assert scores is not None and int(np.argmax(scores)) == 2, scores


def test_a_test_cards_moment_is_told_by_its_burnt_in_clock(rabbit: np.ndarray, tmp_path: Path) -> None:
    """Keyframes a second apart of a still picture with a burnt-in timecode, as on test bars: the
    screenshot at 00:00:07;12 matches the keyframe at 00:00:07;00, the one whose digits it shares most,
    though every keyframe aligns with it and agrees with it everywhere else."""
    def draw(picture: np.ndarray, code: str) -> None:
        cv2.rectangle(picture, (120, 200), (360, 250), (0, 0, 0), -1)
        cv2.putText(picture, code, (130, 238), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (255, 255, 255), 2)

    codes = [f"00:00:0{s};00" for s in range(3, 10)]
    pairs, scores = still_view(tmp_path, cv2.resize(rabbit, (480, 270), interpolation=cv2.INTER_AREA), draw,
                               codes, "00:00:07;12")
    assert scores is not None and int(np.argmax(scores)) == codes.index("00:00:07;00"), scores


def test_keyframes_of_a_pan_or_of_one_picture_are_no_still_view(rabbit: np.ndarray, tmp_path: Path) -> None:
    """Where most of the picture changes (a pan) or none of it does, comparing where keyframes differ
    tells nothing: None, and the moment is left to the alignment."""
    background = cv2.resize(rabbit, (480, 270), interpolation=cv2.INTER_AREA)

    def pan(picture: np.ndarray, dx: int) -> None:
        picture[:] = np.roll(background, dx, axis=1)

    assert still_view(tmp_path, background, pan, [0, 40, 80], 40)[1] is None
    assert still_view(tmp_path, background, lambda picture, _: None, [0, 1, 2], 1)[1] is None


def test_where_things_moved_agrees_when_nothing_moved_in_either(rabbit: np.ndarray) -> None:
    """The motion step's measure: a query that is the background matches a keyframe that is too (a
    cosine of two near-empty maps was noise, and let a keyframe from a moment the camera shook win
    over an untouched frame's own); a thing in the same place matches, one elsewhere or one the query
    does not show does not."""
    background = cv2.resize(cv2.cvtColor(rabbit, cv2.COLOR_RGB2GRAY), (256, 144)).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 2, background.shape).astype(np.float32)
    cover = np.ones(background.shape, bool)

    def blob(x: int) -> np.ndarray:
        out = background.copy()
        out[60:100, x:x + 24] = 255 - out[60:100, x:x + 24]
        return out

    laid = [(background + noise, background, cover), (blob(40) + noise, blob(40), cover), (blob(40), blob(180), cover),
            (background + noise, blob(180), cover), None]
    empty, same_place, elsewhere, appeared, not_laid = _moved_alike(laid, background)
    assert empty > 0.9 and same_place > 0.9, (empty, same_place)
    assert elsewhere < 0.2 and appeared < 0.2 and not_laid == -1.0, (elsewhere, appeared)


def test_kinetic_typographys_moment_is_told_by_where_its_words_are(videos: Path, tmp_path: Path) -> None:
    """Where ORB aligns nothing (a dark, low-resolution title sequence, greyscale, blurred and noisy), the
    embedding scores the video's other titles about as high as the query's own (mediaelement_echo: the
    keyframes at 12.67, 28.07 and 29.00 s within 0.06 of the one at 1.20 s, for a frame at 1.23 s). Where
    the picture's edges are tells them apart, the words more than the light sweeping over the
    background (by brightness alone the others correlated up to 0.21 here)."""
    video = videos / "mediaelement_echo_270p_vp8.webm"
    keyframes = []
    for t in (1.20, 12.67, 28.07, 29.00):
        path = tmp_path / f"{t}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(frame_at(video, t), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        keyframes.append(keyframe_layout(str(path)))
    grey = cv2.cvtColor(cv2.cvtColor(frame_at(video, 1.23), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    noisy = cv2.GaussianBlur(grey, (0, 0), 2) + np.random.default_rng(0).normal(0, 12, grey.shape)
    query = layout(np.clip(noisy, 0, 255).astype(np.uint8))
    agreements = [float((query * k).sum()) for k in keyframes]
    assert agreements[0] > 0.4 and max(agreements[1:]) < 0.1, agreements
    assert layout(np.full((90, 160, 3), 30, np.uint8)) is None  # a flat picture has no layout
