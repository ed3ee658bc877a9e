"""keyframes.mode: iframes reads only the packets the container marks as keyframes; it must still give
exactly the frames the decoder calls keyframes, on every codec, and cope with containers that mark none."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest

from utils.config import KeyframeConfig, load_config
from utils.keyframes import KeyframeExtractor


def iframes_config() -> KeyframeConfig:
    # no near-duplicate dropping: every keyframe the decoder gives must come out
    return dataclasses.replace(load_config().keyframes, mode="iframes", dedup_distance=-1)


def decoder_keyframes(path: Path) -> list[int]:
    """pts of the frames a full decode flags as keyframes: the ground truth."""
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(c.streams.video[0]) if f.key_frame]


@pytest.mark.parametrize("name", [
    "sintel_trailer_480p_h264.mp4",  # H.264 with B-frames: keyframes come out of a reordering decoder
    "mediabunny_transparency_720p60_vp9.webm",  # VP9, whose decoder ignores skip_frame=NONKEY
    "bbb_5s_1080p_hevc.ts",  # HEVC in MPEG-TS (non-zero start time)
    "mediaelement_echo_270p_vp8.webm",  # VP8, a keyframe every few frames
])
def test_iframes_mode_gives_exactly_the_decoders_keyframes(videos, name):
    path = videos / name
    with KeyframeExtractor(path, iframes_config()) as ex:
        got = [k.pts for k in ex]
        assert ex.frames_decoded == len(got)  # nothing but keyframes was decoded
    assert got == decoder_keyframes(path)
    assert got


def test_iframes_mode_reads_a_container_that_marks_no_keyframes(videos, tmp_path):
    src = videos / "sintel_trailer_480p_h264.mp4"
    nut = tmp_path / "unmarked.nut"
    with av.open(str(src)) as i, av.open(str(nut), "w", format="nut") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is None:
                continue
            packet.is_keyframe = False
            packet.stream = out
            o.mux(packet)
    with av.open(str(nut)) as c:
        assert not any(p.is_keyframe for p in c.demux(c.streams.video[0])), "precondition: no packet marked"
    with KeyframeExtractor(nut, iframes_config()) as ex:
        from_nut = [(k.frame_index, k.image.shape) for k in ex]
    with KeyframeExtractor(src, iframes_config()) as ex:
        from_mp4 = [(k.frame_index, k.image.shape) for k in ex]
    assert from_nut == from_mp4 and len(from_mp4) == 15


def full_config(skip_nonref: bool, skip_loop_filter: bool = True) -> KeyframeConfig:
    return dataclasses.replace(load_config().keyframes, mode="full", skip_nonref=skip_nonref,
                               skip_loop_filter=skip_loop_filter)


def test_full_mode_skips_the_frames_nothing_references_and_keeps_coverage(videos):
    path = videos / "bikes_10s_640x272_h264.mp4"  # H.264 with B-frames: 250 frames, 115 of them unreferenced
    runs = {}
    for skip in (False, True):
        with KeyframeExtractor(path, full_config(skip)) as ex:
            runs[skip] = ([(k.frame_index, k.pts, k.timestamp, k.kind) for k in ex], ex.frames_decoded, ex.info.fps)
    (every, decoded_every, fps), (skipped, decoded_skipped, _) = runs[False], runs[True]
    assert decoded_every == 250 and decoded_skipped < 0.6 * decoded_every
    # I-frames are referenced by definition: the same ones come out
    assert [k[1] for k in skipped if k[3] == "iframe"] == [k[1] for k in every if k[3] == "iframe"]
    times = [k[2] for k in skipped]
    assert max(b - a for a, b in zip(times, times[1:])) <= full_config(True).max_gap + 1e-6
    assert all(index == round(t * fps) for index, _, t, _ in skipped)  # the frame's place, not a count of decoded frames
    assert abs(len(skipped) - len(every)) <= 0.2 * len(every)


def test_only_keyframes_are_deblocked_when_the_loop_filter_is_skipped(videos):
    """keyframes.skip_loop_filter: the codec's keyframes come out exactly as a normal decode gives them,
    the other kept frames a little blockier (the filter is really off), never far from the picture."""
    path = videos / "bikes_10s_640x272_h264.mp4"  # H.264, deblocked
    runs = {}
    for skip in (False, True):
        with KeyframeExtractor(path, full_config(True, skip_loop_filter=skip)) as ex:
            runs[skip] = {k.pts: (k.kind, k.image.astype(np.float32)) for k in ex}
    common = sorted(set(runs[False]) & set(runs[True]))
    assert len(common) >= 0.8 * len(runs[False])
    iframes = [pts for pts in common if runs[True][pts][0] == "iframe"]
    others = [pts for pts in common if runs[True][pts][0] != "iframe"]
    assert iframes and others
    assert all(np.array_equal(runs[True][pts][1], runs[False][pts][1]) for pts in iframes)
    psnr = [10 * np.log10(255 ** 2 / max(1e-9, float(((runs[True][pts][1] - runs[False][pts][1]) ** 2).mean())))
            for pts in others]
    assert min(psnr) > 30 and any(p < 60 for p in psnr), psnr


def test_full_mode_decodes_every_frame_of_a_stream_without_timestamps(videos, tmp_path):
    src = videos / "bikes_10s_640x272_h264.mp4"
    raw = tmp_path / "bikes.h264"  # a raw H.264 stream: its frames carry no pts, so times come from counting
    with av.open(str(src)) as i, av.open(str(raw), "w", format="h264") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                o.mux(packet)
    got = {}
    for skip in (False, True):
        with KeyframeExtractor(raw, full_config(skip)) as ex:
            got[skip] = ([(k.frame_index, k.timestamp, k.kind) for k in ex], ex.frames_decoded)
    assert got[True] == got[False]
    assert got[True][1] == 250
