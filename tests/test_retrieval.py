"""VideoRetrieval: copy detection with aligned segments, in process (SQLite) and through the CLI (MariaDB).

Query clips are made here with PyAV (re-encoded segments, spliced footage), so nothing but the
shared clips is needed. The CLI library is built by Create.py in a subprocess: a Milvus Lite
database can be open in one process only, and that one must never be opened by pytest itself.
Two small libraries, one per catalogue backend, keep the file fast.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
import pytest

import badmedia
from conftest import config_env, drop_mysql_database, make_config, need_videos, run_script
from utils import retrieval
from utils.catalogue import Catalogue, open_catalogue
from utils.config import Config
from utils.embed_job import embed_library
from utils.embedder import Embedder
from utils.errors import VideoError
from utils.ingest import ingest
from utils.retrieval import CopyDetector, FrameHit, find_segments
from utils.vectorstore import VectorStore

LIBRARY = ["webrtc_chrome_270p_h264.mp4", "chaplin_360p_h264.mp4", "mdn_frog_480p_h264.mp4",
           "mdn_pig_480p_h264.mp4", "bikes_10s_640x272_h264.mp4"]
HALF_RES = ("webrtc_chrome_270p_h264.mp4", 13.0, 4.0)  # 4 s from the middle, re-encoded at half size
PART = [("chaplin_360p_h264.mp4", 2.0, 4.0), ("intel_bottle_detection_360p_h264.mp4", 3.0, 4.0)]  # library, then not
NEGATIVE = ("mdn_elf_480p_h264.mp4", 1.0, 4.0)  # another toy on the same table as mdn_frog and mdn_pig
DUPLICATE = "bikes_10s_640x272_h264.mp4"
INSET = ("mdn_frog_480p_h264.mp4", 1.0, 4.0)  # shown in a box over held-out footage (a reaction video)
INSET_NEGATIVE = ("mdn_elf_480p_h264.mp4", 1.0, 4.0)  # the look-alike toy, shown the same way
BACKGROUND = ("intel_bottle_detection_360p_h264.mp4", 10.0, 4.0)


def make_clip(out: Path, segments: list[tuple[str, float, float]], size: tuple[int, int],
              codec: str = "mpeg4", bit_rate: int = 300_000) -> Path:
    """Splice ``(shared clip, start, duration)`` segments into one re-encoded clip, keeping their timing."""
    videos = need_videos()
    with av.open(str(out), "w") as dst:
        stream = dst.add_stream(codec, rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        stream.codec_context.time_base = Fraction(1, 1000)
        at, last_pts = 0.0, -1
        for name, start, duration in segments:
            with av.open(str(videos / name)) as src:
                s = src.streams.video[0]
                origin = float((s.start_time or 0) * s.time_base)
                src.seek(int((start + origin) / s.time_base), stream=s, backward=True)
                for frame in src.decode(s):
                    t = float(frame.pts * s.time_base) - origin
                    if t < start - 1e-6:
                        continue
                    if t >= start + duration - 1e-6:
                        break
                    pts = int(round((at + t - start) * 1000))
                    if pts <= last_pts:
                        continue
                    new = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                    new.pts, new.time_base, last_pts = pts, Fraction(1, 1000), pts
                    for packet in stream.encode(new):
                        dst.mux(packet)
            at += duration
        for packet in stream.encode():
            dst.mux(packet)
    return out


def segment_frames(name: str, start: float, duration: float) -> list[tuple[float, np.ndarray]]:
    """The RGB frames of a shared clip from ``start`` for ``duration`` seconds, timed from 0."""
    with av.open(str(need_videos() / name)) as src:
        s = src.streams.video[0]
        origin = float((s.start_time or 0) * s.time_base)
        frames = [(float(f.pts * s.time_base) - origin - start, f.to_ndarray(format="rgb24")) for f in src.decode(s)]
    return [(t, rgb) for t, rgb in frames if 0 <= t + 1e-6 < duration]


def make_inset_clip(out: Path, inset: tuple[str, float, float], background: tuple[str, float, float],
                    size: tuple[int, int] = (640, 360), width: float = 0.45) -> Path:
    """A reaction video: ``inset`` at ``width`` of the frame in a white-bordered box at the top right,
    over ``background``, 25 fps (each showing its frame nearest in time)."""
    fg, bg = segment_frames(*inset), segment_frames(*background)
    w, h = size
    iw = int(w * width) // 2 * 2
    ih = int(iw * fg[0][1].shape[0] / fg[0][1].shape[1]) // 2 * 2
    x, y = w - iw - 20, 20

    def picture(t: float) -> np.ndarray:
        shot = cv2.resize(min(bg, key=lambda f: abs(f[0] - t))[1], size)
        cv2.rectangle(shot, (x - 4, y - 4), (x + iw + 3, y + ih + 3), (255, 255, 255), -1)
        shot[y:y + ih, x:x + iw] = cv2.resize(min(fg, key=lambda f: abs(f[0] - t))[1], (iw, ih))
        return shot

    return badmedia.write_clip(out, (picture(i / 25) for i in range(int(inset[2] * 25))), size, 25, "mpeg4", 800_000)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("queries")
    out = {
        "half": make_clip(d / "chrome half.mkv", [HALF_RES], (240, 136), "mpeg4", 250_000),
        "part": make_clip(d / "part.mkv", PART, (480, 270), "mpeg4", 600_000),
        "negative": make_clip(d / "elf.mkv", [NEGATIVE], (360, 240), "mpeg4", 400_000),
        "inset": make_inset_clip(d / "reaction.mkv", INSET, BACKGROUND),
        "inset negative": make_inset_clip(d / "elf reaction.mkv", INSET_NEGATIVE, BACKGROUND),
        "duplicate": d / "renamed copy.mp4",
        "bad": badmedia.random_bytes(d),
    }
    shutil.copy(need_videos() / DUPLICATE, out["duplicate"])
    out["evil"] = d / "<img src=x onerror=alert(1)><script>alert(1)<.script>.mkv"
    shutil.copy(out["half"], out["evil"])
    return out


@contextmanager
def built_library(tmp: Path, names: list[str]) -> Iterator[tuple[Config, Catalogue, VectorStore]]:
    """A SQLite + Milvus Lite library of these shared clips, ingested and embedded, held open."""
    videos = need_videos()
    cfg = make_config(tmp, "sqlite")
    with open_catalogue(cfg) as cat:
        assert ingest(cfg, cat, [videos / n for n in names]).count("added") == len(names)
        embed_library(cfg, cat)
        with VectorStore(cfg) as store:
            yield cfg, cat, store


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory):
    with built_library(tmp_path_factory.mktemp("sqlite"), LIBRARY) as (cfg, cat, store):
        yield CopyDetector(cfg, cat, store, Embedder.from_config(cfg))


def only_match(answer, name: str):
    assert answer.is_copy, answer
    assert [Path(m.video_path).name for m in answer.matches] == [name], answer.as_dict()
    return answer.matches[0]


# -- the alignment itself, on synthetic hits ---------------------------------------------------------------

def synthetic(video: int, query_times, offset: float, score: float = 0.9, start_id: int = 0) -> list[FrameHit]:
    """Hits of a copy: each query frame matches the library keyframe at (about) query time + offset."""
    return [FrameHit(i, t, start_id + i, video, round(t + offset, 1), score) for i, t in enumerate(query_times)]


def test_consistent_offset_wins_over_scattered_lookalikes():
    rng = np.random.default_rng(7)
    times = np.arange(0, 8, 0.5)
    hits = synthetic(1, times, 20.0, 0.8)
    # a look-alike video matches every frame, a little better, but at random moments
    hits += [FrameHit(i, t, 1000 + i, 2, float(rng.uniform(0, 60)), 0.85) for i, t in enumerate(times)]
    segs = find_segments(hits, tolerance=1.0, max_gap=3.0, min_frames=3, floor=0.45)
    assert segs[0].video_id == 1
    assert segs[0].offset == pytest.approx(20.0, abs=0.15)
    assert len(segs[0].pairs) == len(times)
    assert all(len(s.pairs) < 4 for s in segs if s.video_id == 2)


def test_other_frame_rate_dropped_frames_and_part_copy():
    """15 fps query of a 24 fps video: times differ, frames are missing; only its first 4 s are a copy."""
    times = [t for t in np.arange(0, 8, 1 / 15) if not (2.0 < t < 2.7)][::7]
    hits = synthetic(3, [t for t in times if t < 4.0], 7.25)
    hits += [FrameHit(100 + i, t, 500 + i, 4, 3.0, 0.5) for i, t in enumerate(times) if t >= 4.0]
    segs = [s for s in find_segments(hits, 1.0, 3.0, 3, 0.45) if s.video_id == 3]
    assert len(segs) == 1
    assert segs[0].pairs[0].query_time == 0.0 and segs[0].pairs[-1].query_time < 4.0
    assert segs[0].offset == pytest.approx(7.25, abs=0.1)


def test_duplicate_pairs_once_whichever_side_found_them():
    def match(video: int, score: float, q: tuple[float, float], v: tuple[float, float]) -> retrieval.CopyMatch:
        return retrieval.CopyMatch(video, f"/lib/{video}.mp4", score, *q, *v, 5)

    answers = [
        retrieval.CopyAnswer("/lib/1.mp4", True, [match(2, 0.7, (0, 5), (10, 15)), match(3, 0.6, (1, 4), (1, 4))],
                             library_video_id=1),
        retrieval.CopyAnswer("/lib/2.mp4", True, [match(1, 0.8, (10, 15), (0, 5))], library_video_id=2),
        retrieval.CopyAnswer("/lib/3.mp4", False, [], library_video_id=3),
        retrieval.CopyAnswer("/elsewhere/clip.mp4", True, [match(3, 0.9, (0, 2), (0, 2))]),  # not a library video
    ]
    pairs = retrieval.duplicate_pairs(answers)
    assert [(p.a, p.b, p.score) for p in pairs] == [(1, 2, 0.8), (1, 3, 0.6)]
    assert (pairs[0].a_path, pairs[0].a_start, pairs[0].b_start) == ("/lib/1.mp4", 0, 10)  # as video 2 saw it


def test_chain_is_monotone_in_time():
    hits = synthetic(1, np.arange(0, 6, 0.5), 10.0)
    hits.append(FrameHit(5, 2.5, 99, 1, 10.0, 0.95))  # a strong hit that would run backwards
    seg = find_segments(hits, 1.0, 3.0, 3, 0.45)[0]
    video_times = [p.video_time for p in seg.pairs]
    assert video_times == sorted(video_times) and 99 not in [p.keyframe_id for p in seg.pairs]


# -- in process, SQLite catalogue ----------------------------------------------------------------------------

def test_half_resolution_segment_found_with_its_times(detector, clips):
    m = only_match(detector.detect(clips["half"]), HALF_RES[0])
    assert m.video_start == pytest.approx(HALF_RES[1], abs=1.0)
    assert m.video_end == pytest.approx(HALF_RES[1] + HALF_RES[2], abs=1.0)
    assert m.query_start == pytest.approx(0.0, abs=1.0) and m.query_end == pytest.approx(HALF_RES[2], abs=1.0)
    assert m.frames >= 4 and 0.6 <= m.score <= 1.0


def test_clip_of_a_video_not_in_library_is_no_copy(detector, clips):
    answer = detector.detect(clips["negative"])
    assert not answer.is_copy and answer.matches == []


def test_part_copy_reports_only_the_library_segment(detector, clips):
    name, start, duration = PART[0]
    m = only_match(detector.detect(clips["part"]), name)
    assert m.query_start == pytest.approx(0.0, abs=1.0) and m.query_end == pytest.approx(duration, abs=1.0)
    assert m.video_start == pytest.approx(start, abs=1.0) and m.video_end == pytest.approx(start + duration, abs=1.0)


def test_inset_copy_found_and_inset_look_alike_is_no_copy(detector, clips):
    """A reaction video shows the library video in a box over other footage: the box is searched on its
    own. The same box holding a look-alike (another toy on the same table) is no copy."""
    name, start, duration = INSET
    m = only_match(detector.detect(clips["inset"]), name)
    assert m.video_start == pytest.approx(start, abs=1.0) and m.video_end == pytest.approx(start + duration, abs=1.0)
    assert m.query_start == pytest.approx(0.0, abs=1.0) and m.query_end == pytest.approx(duration, abs=1.0)
    answer = detector.detect(clips["inset negative"])
    assert not answer.is_copy and answer.matches == []


def test_exact_duplicate_is_answered_without_decoding(detector, clips, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("an exact duplicate must not be decoded")

    monkeypatch.setattr(retrieval, "KeyframeExtractor", no_decoding)
    m = only_match(detector.detect(clips["duplicate"]), DUPLICATE)
    assert m.exact and m.score == 1.0
    assert (m.query_start, m.video_start) == (0.0, 0.0)
    assert m.query_end == m.video_end == pytest.approx(10.0, abs=0.1)


NEAR = ["mp4ff_bbb_10s_240p_h264.mp4", "bbb_trim_5s_180p_vp9.webm", "bikes_10s_640x272_h264.mp4",
        "mdn_pig_480p_h264.mp4", "mdn_rabbit_240p_h264.mp4", "webrtc_mixed_content_270p_vp8.webm",
        "sintel_trailer_480p_h264.mp4"]  # two encodes of Big Buck Bunny's opening, look-alikes, others


@pytest.fixture(scope="module")
def near_library(tmp_path_factory: pytest.TempPathFactory):
    """A library with near-duplicates in it, and look-alikes that are not copies."""
    with built_library(tmp_path_factory.mktemp("near"), NEAR) as (cfg, cat, store):
        yield cfg, cat, store, {Path(v.path).name: v.id for v in cat.videos()}


def test_others_compares_a_library_video_with_the_rest_of_the_library(near_library):
    cfg, cat, store, ids = near_library
    videos = need_videos()
    det = CopyDetector(cfg, cat, store, Embedder.from_config(cfg))
    itself = det.detect(videos / NEAR[0])
    assert itself.library_video_id == ids[NEAR[0]]
    assert [m.video_id for m in itself.matches] == [ids[NEAR[0]]] and itself.matches[0].exact
    others = det.detect(videos / NEAR[0], others=True)
    assert others.is_copy and others.library_video_id == ids[NEAR[0]]
    assert [m.video_id for m in others.matches] == [ids[NEAR[1]]], others.as_dict()
    m = others.matches[0]
    assert not m.exact and abs(m.video_start - m.query_start) <= 0.5 and m.query_end - m.query_start >= 3
    alone = det.detect(videos / NEAR[2], others=True)
    assert not alone.is_copy and alone.library_video_id == ids[NEAR[2]] and alone.matches == []


def test_look_alikes_that_do_not_align_are_no_copies(near_library):
    """Another toy on the same table, and pages of text against a film's end credits: the embedding and its
    regions call them copies (0.46-0.62); ORB + RANSAC aligns none of their frames, or one."""
    cfg, cat, store, ids = near_library
    videos = need_videos()
    embedder = Embedder.from_config(cfg)
    loose = dataclasses.replace(cfg, retrieval=dataclasses.replace(cfg.retrieval, min_aligned_pairs=0))
    for query, look_alike in ((NEAR[3], NEAR[4]), (NEAR[5], NEAR[6])):
        without = CopyDetector(loose, cat, store, embedder).detect(videos / query, others=True)
        assert ids[look_alike] in {m.video_id for m in without.matches}, without.as_dict()  # what is tested exists
        answer = CopyDetector(cfg, cat, store, embedder).detect(videos / query, others=True)
        assert not answer.is_copy and answer.matches == [], answer.as_dict()


def test_bad_file_raises_video_error(detector, clips):
    with pytest.raises(VideoError, match="not a readable video"):
        detector.detect(clips["bad"])


def test_still_image_points_to_search(detector, tmp_path):
    """A picture asked as a clip: the error says which script answers a picture."""
    for still in badmedia.still_images(tmp_path):
        with pytest.raises(VideoError, match=r"a still image .*Search\.py"):
            detector.detect(still)


# -- the CLI, MariaDB catalogue, on a library no pytest process ever opened -------------------------------

@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory, mysql_server: dict[str, str]):
    videos = need_videos()
    cfg = make_config(tmp_path_factory.mktemp("cli"), "mysql", mysql_server)
    env = config_env(cfg)
    r = run_script("Create.py", "--embed", "--quiet", *[str(videos / n) for n in LIBRARY], env=env)
    assert r.returncode == 0, r.stderr
    yield env
    drop_mysql_database(cfg)


@pytest.fixture(scope="module")
def cli_run(cli_env, clips, tmp_path_factory: pytest.TempPathFactory):
    report = tmp_path_factory.mktemp("report") / "copies.html"
    order = ["half", "bad", "negative", "part", "duplicate", "evil"]
    r = run_script("VideoRetrieval.py", "--json", "--report", str(report), *[str(clips[k]) for k in order],
                   env=cli_env)
    return r, report


def test_cli_bad_file_one_error_line_others_answered(cli_run, clips):
    r, _ = cli_run
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(clips["bad"]) in errors[0]
    assert "Traceback" not in r.stderr
    answers = json.loads(r.stdout)
    assert [a["query"] for a in answers] == [str(clips[k]) for k in ("half", "negative", "part", "duplicate", "evil")]


def test_cli_json_schema_and_answers(cli_run, clips):
    answers = {a["query"]: a for a in json.loads(cli_run[0].stdout)}
    for a in answers.values():
        assert set(a) == {"query", "is_copy", "library_video_id", "matches"} and isinstance(a["is_copy"], bool)
        assert a["is_copy"] == bool(a["matches"])
        for m in a["matches"]:
            assert set(m) == {"video_id", "video_path", "score", "query_start", "query_end", "video_start",
                              "video_end", "frames"}
            assert isinstance(m["video_id"], int) and isinstance(m["frames"], int)
            assert m["query_start"] <= m["query_end"] and m["video_start"] <= m["video_end"]
    half = answers[str(clips["half"])]["matches"]
    assert [Path(m["video_path"]).name for m in half] == [HALF_RES[0]]
    assert abs(half[0]["video_start"] - HALF_RES[1]) <= 1.0
    assert answers[str(clips["negative"])] == {"query": str(clips["negative"]), "is_copy": False,
                                               "library_video_id": None, "matches": []}
    part = answers[str(clips["part"])]["matches"]
    assert [Path(m["video_path"]).name for m in part] == [PART[0][0]] and part[0]["query_end"] <= 5.0
    dup = answers[str(clips["duplicate"])]["matches"]
    assert Path(dup[0]["video_path"]).name == DUPLICATE and dup[0]["score"] == 1.0
    assert answers[str(clips["duplicate"])]["library_video_id"] == dup[0]["video_id"]


def test_cli_report_shows_pairs_and_escapes_names(cli_run, clips):
    html = cli_run[1].read_text(encoding="utf-8")
    assert "<script" not in html and "onerror=alert(1)>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;" in html
    assert html.count("data:image/jpeg;base64,") >= 10  # clip frames and library keyframes, inlined


def test_cli_others_looks_past_the_clip_itself(cli_env):
    clip = need_videos() / DUPLICATE
    r = run_script("VideoRetrieval.py", "--others", "--json", str(clip), env=cli_env)
    assert r.returncode == 0, r.stderr
    (answer,) = json.loads(r.stdout)
    assert isinstance(answer["library_video_id"], int) and not answer["is_copy"] and answer["matches"] == []
    table = run_script("VideoRetrieval.py", "--others", str(clip), env=cli_env)
    assert f"{clip} (library video {answer['library_video_id']}): not a copy" in table.stdout


def test_cli_library_lists_near_duplicates_within_the_library(tmp_path):
    """--library: every library video against the others; two encodes of Big Buck Bunny's opening find each other."""
    videos = need_videos()
    names = ["mp4ff_bbb_10s_240p_h264.mp4", "bbb_trim_5s_180p_vp9.webm", "bikes_10s_640x272_h264.mp4"]
    env = config_env(make_config(tmp_path, "sqlite"))
    made = run_script("Create.py", "--embed", "--json", *[str(videos / n) for n in names], env=env)
    assert made.returncode == 0, made.stderr
    ids = {Path(f["path"]).name: f["video_id"] for f in json.loads(made.stdout)["files"]}
    r = run_script("VideoRetrieval.py", "--library", "--json", env=env)
    assert r.returncode == 0, r.stderr
    answers = {Path(a["query"]).name: a for a in json.loads(r.stdout)}
    assert set(answers) == set(names) and all(a["library_video_id"] == ids[n] for n, a in answers.items())
    for mine, other in ((names[0], names[1]), (names[1], names[0])):
        assert answers[mine]["is_copy"] and answers[mine]["matches"][0]["video_id"] == ids[other]
    assert not answers[names[2]]["is_copy"]
    table = run_script("VideoRetrieval.py", "--library", env=env)
    lines = table.stdout.rstrip().splitlines()
    assert table.returncode == 0 and names[2] not in table.stdout
    assert [line for line in lines if names[0] in line and names[1] in line][0].split()[0] == "1"
    assert lines[-1] == "1 near-duplicate pair among 2 of the 3 library videos checked"
    none = run_script("VideoRetrieval.py", env=env)
    assert none.returncode == 1 and none.stderr.startswith("error: nothing to check")


def test_cli_table_and_threshold(cli_env, clips):
    r = run_script("VideoRetrieval.py", "--threshold", "0.99", str(clips["half"]), str(clips["duplicate"]),
                   env=cli_env)
    assert r.returncode == 0, r.stderr
    assert f"{clips['half']}: not a copy" in r.stdout
    assert f"{clips['duplicate']}: COPY" in r.stdout and DUPLICATE in r.stdout and "same file" in r.stdout
