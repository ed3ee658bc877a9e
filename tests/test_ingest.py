"""Create.py / ingest on the real shared clips, on SQLite and on a real MariaDB."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import badmedia
from conftest import CODE, config_env, drop_mysql_database, make_config, need_videos, run_script
from utils.catalogue import open_catalogue
from utils.config import Config
from utils.embed_job import EmbedSink, embed_library
from utils.embedder import Embedder
from utils.errors import VectorStoreError
from utils.ingest import ingest
from utils.storage import keyframe_files
from utils.verify import features_file, has_stored_features
from utils.vectorstore import VectorStore

SMALL = ["bikes_10s_640x272_h264.mp4", "bbb_5s_1080p_hevc.ts", "spiral_1s_240p_av1.avi",
         "bbb_trim_5s_180p_vp9.webm", "mdn_flower_540p_vp8.webm"]


def library_snapshot(cfg: Config) -> dict[str, list[tuple]]:
    """Everything ingest decided, keyed by content hash (ids and paths may differ between libraries)."""
    with open_catalogue(cfg) as cat:
        out = {}
        for v in cat.videos():
            kfs = cat.video_keyframes(v.id)
            out[v.content_hash] = [(v.status, v.container, v.codec, v.width, v.height, round(v.fps, 3),
                                    round(v.duration, 3), v.keyframe_count)] + \
                                  [(k.seq, k.frame_index, k.pts, round(k.timestamp, 4), k.kind) for k in kfs]
        return out


def assert_consistent(cfg: Config) -> None:
    """Rows and files agree: every keyframe row has its image, no image lacks a row, nothing unfinished."""
    with open_catalogue(cfg) as cat:
        rows = {v.id: {k.image_path for k in cat.video_keyframes(v.id)} for v in cat.videos()}
        assert all(v.status == "ready" for v in cat.videos())
    files = keyframe_files(cfg.data_path)
    assert {vid: paths for vid, paths in files.items() if paths} == {vid: p for vid, p in rows.items() if p}


# -- the whole shared set, once per backend --------------------------------------------------------------

@pytest.fixture(scope="module")
def full_libraries(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    videos = need_videos()
    mysql = request.getfixturevalue("mysql_server")
    libs = {}
    for backend in ("sqlite", "mysql"):
        cfg = make_config(tmp_path_factory.mktemp(backend), backend, mysql)
        with open_catalogue(cfg) as cat:
            summary = ingest(cfg, cat, [videos])
        libs[backend] = (cfg, summary)
    yield libs
    drop_mysql_database(libs["mysql"][0])


def test_all_clips_same_library_on_sqlite_and_mariadb(full_libraries):
    (sq_cfg, sq), (my_cfg, my) = full_libraries["sqlite"], full_libraries["mysql"]
    assert sq.count("added") == 36 and sq.count("failed") == 0
    assert my.count("added") == 36 and my.count("failed") == 0
    snap = library_snapshot(sq_cfg)
    assert len(snap) == 36
    assert snap == library_snapshot(my_cfg)
    assert_consistent(sq_cfg)
    assert_consistent(my_cfg)


def test_every_clip_covered_at_max_gap(full_libraries):
    cfg, _ = full_libraries["sqlite"]
    gap = cfg.keyframes.max_gap
    with open_catalogue(cfg) as cat:
        for v in cat.videos():
            ts = [k.timestamp for k in cat.video_keyframes(v.id)]
            assert ts == sorted(ts) and len(ts) >= 1, v.path
            assert ts[0] <= 1.0 / v.fps + 1e-6, (v.path, ts[0])
            assert max(np.diff(ts), default=0.0) <= gap + 1e-6, v.path
            assert v.duration - ts[-1] <= gap + 1.0 / v.fps + 0.1, (v.path, v.duration, ts[-1])


def test_timestamps_and_images_match_decoded_frames(full_libraries, videos):
    cfg, _ = full_libraries["sqlite"]
    with open_catalogue(cfg) as cat:
        by_name = {Path(v.path).name: v for v in cat.videos()}
        for name in ("bbb_5s_1080p_hevc.ts", "webrtc_chrome_270p_h264.mp4", "bbb_trim_5s_180p_vp9.webm"):
            v = by_name[name]
            kfs = {k.pts: k for k in cat.video_keyframes(v.id)}
            with av.open(str(videos / name)) as c:
                s = c.streams.video[0]
                start = s.start_time or 0
                seen = 0
                for frame in c.decode(s):
                    k = kfs.get(frame.pts)
                    if k is None:
                        continue
                    seen += 1
                    assert k.timestamp == pytest.approx(float((frame.pts - start) * s.time_base), abs=1e-4)
                    stored = cv2.cvtColor(cv2.imread(str(cfg.data_path / k.image_path)), cv2.COLOR_BGR2RGB)
                    decoded = frame.to_ndarray(format="rgb24", width=stored.shape[1], height=stored.shape[0])
                    assert np.abs(stored.astype(int) - decoded).mean() < 6, (name, k.seq)
                assert seen == len(kfs), name
            if name.endswith(".ts"):
                assert min(kfs.values(), key=lambda k: k.seq).timestamp == 0.0  # stream start offset removed


def test_image_size_capped_and_names_from_ids(full_libraries):
    cfg, _ = full_libraries["sqlite"]
    with open_catalogue(cfg) as cat:
        for v in cat.videos():
            for k in cat.video_keyframes(v.id)[:2]:
                assert k.image_path == f"keyframes/{v.id // 1000:03d}/{v.id}/{k.seq:06d}.jpg"
                h, w = cv2.imread(str(cfg.data_path / k.image_path)).shape[:2]
                assert max(h, w) <= cfg.keyframes.image_max_side


# -- behaviour, on both backends --------------------------------------------------------------------------

def test_rerun_adds_nothing_and_duplicates_are_reported(cfg, videos, tmp_path):
    files = [videos / n for n in SMALL[:3]]
    with open_catalogue(cfg) as cat:
        first = ingest(cfg, cat, files)
        assert first.count("added") == 3
        before = cat.counts()
        again = ingest(cfg, cat, files)
        assert [r.status for r in again.results] == ["exists"] * 3
        copy = tmp_path / "renamed copy.mp4"
        shutil.copy(files[0], copy)
        dup = ingest(cfg, cat, [copy])
        assert dup.results[0].status == "duplicate"
        assert str(files[0]) in dup.results[0].message
        assert cat.counts() == before


def test_bad_inputs_fail_alone_and_leave_nothing(cfg, videos, tmp_path):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    good = videos / "spiral_1s_240p_mpeg4.avi"
    bad = {
        badmedia.zero_bytes(bad_dir): "empty file",
        badmedia.random_bytes(bad_dir): "not a readable video",
        badmedia.text_file(bad_dir): "not a readable video",
        badmedia.audio_only(bad_dir): "no video stream",
        badmedia.truncated(videos / "bikes_10s_640x272_h264.mp4", bad_dir, 0.5): "truncated",
        badmedia.truncated(videos / "mdn_elf_480p_h264.mp4", bad_dir, 0.3): "",
        badmedia.corrupt_moov(videos / "bikes_10s_640x272_h264.mp4", bad_dir): "",
        bad_dir / "missing.mp4": "no such file",
        **{p: "a still image" for p in badmedia.still_images(bad_dir)},
    }
    with open_catalogue(cfg) as cat:
        summary = ingest(cfg, cat, [*bad, good])
        by_path = {r.path: r for r in summary.results}
        assert by_path[str(good.resolve())].status == "added"
        for path, words in bad.items():
            r = by_path.get(str(path.resolve())) or by_path[str(path)]
            assert r.status == "failed", (path.name, r)
            assert str(path.name) in r.message and "\n" not in r.message
            assert words in r.message, (path.name, r.message)
        assert cat.counts()["videos"] == 1
    assert_consistent(cfg)


def _sink_opening_after_decoding(cfg: Config, cat, store_cfg: Config):
    """A Create --embed sink whose Milvus opens only once every video is decoded (as Milvus Lite's
    start can outlast a few small videos), and a progress hook that says when that is."""
    decoded_all = threading.Event()

    def progress(files, _n):
        yield from files
        decoded_all.set()  # the loop asks for a file after the last one

    def open_store() -> VectorStore:
        assert decoded_all.wait(120)
        return VectorStore(store_cfg)

    return EmbedSink(cfg, cat, Embedder.from_config(cfg), open_store), progress


def test_videos_decoded_while_milvus_opens_are_committed_once_it_is_open(cfg, videos):
    files = [videos / n for n in SMALL[:3]]
    with open_catalogue(cfg) as cat:
        sink, progress = _sink_opening_after_decoding(cfg, cat, cfg)
        try:
            summary = ingest(cfg, cat, files, progress=progress, sink=sink)
            sink.close()
            in_milvus = sink.ready().ids()
        finally:
            sink.close_store()
        assert [r.path for r in summary.results] == [str(f.resolve()) for f in files]
        assert [r.status for r in summary.results] == ["added"] * 3
        assert cat.counts()["embedded"] == cat.counts()["keyframes"] == summary.keyframes == sink.embedded > 0
        assert in_milvus == {k.id for v in cat.videos() for k in cat.video_keyframes(v.id)}
    assert_consistent(cfg)


def test_each_embedded_keyframe_keeps_its_features_beside_its_image(videos, tmp_path):
    """With ``keyframes.store_features: true``, Create --embed (the sink) and Create, then Insert2Milvus,
    both store every keyframe's ORB features beside its image, for Search; by default none are stored.
    Either way the images and rows agree (the features files are no drift)."""
    files = [videos / SMALL[0]]
    on = {"P4V_KEYFRAMES__STORE_FEATURES": "true"}
    for how, env in (("sink", on), ("after", on), ("off", {})):
        cfg = make_config(tmp_path / how, "sqlite", **env)
        with open_catalogue(cfg) as cat:
            if how == "sink":
                sink = EmbedSink(cfg, cat, Embedder.from_config(cfg), lambda: VectorStore(cfg))
                try:
                    ingest(cfg, cat, files, sink=sink)
                    sink.close()
                finally:
                    sink.close_store()
            else:
                ingest(cfg, cat, files)
                embed_library(cfg, cat)
            assert cat.counts()["embedded"] == cat.counts()["keyframes"] > 0
            images = [cfg.data_path / k.image_path for v in cat.videos() for k in cat.video_keyframes(v.id)]
        stored = [p for p in images if features_file(p).is_file()]
        assert stored == ([] if how == "off" else images), how
        assert_consistent(cfg)


def test_insert2milvus_features_gives_an_existing_library_its_features(videos, tmp_path):
    """A library embedded with ``keyframes.store_features`` off gets every keyframe's features from
    ``Insert2Milvus.py --features``, with nothing re-embedded. A re-run stores only what is unusable
    (a file cut short by a crash) and counts images that are gone or unreadable."""
    cfg = make_config(tmp_path, "sqlite")
    created = run_script("Create.py", "--embed", "--quiet", str(videos / SMALL[0]), env=config_env(cfg))
    assert created.returncode == 0, created.stderr
    with open_catalogue(cfg) as cat:
        images = [cfg.data_path / k.image_path for v in cat.videos() for k in cat.video_keyframes(v.id)]
    assert len(images) > 3 and not any(features_file(p).exists() for p in images)

    def run() -> dict[str, int]:
        done = run_script("Insert2Milvus.py", "--features", "--json", env=config_env(cfg))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = run()
    assert (first["embedded"], first["features_stored"], first["features_already_stored"]) == (0, len(images), 0)
    assert all(has_stored_features(p) for p in images)
    cut = features_file(images[0])
    cut.write_bytes(cut.read_bytes()[:100])
    images[1].unlink()
    images[2].write_bytes(b"not a JPEG")
    for gone in images[1:3]:
        features_file(gone).unlink()
    second = run()
    assert (second["features_stored"], second["features_already_stored"], second["images_unreadable"]) == \
        (1, len(images) - 3, 2)
    assert has_stored_features(images[0]) and not any(features_file(p).exists() for p in images[1:3])


def test_a_video_failing_beside_the_embedder_leaves_nothing_of_it(cfg, videos, tmp_path):
    """Create --embed with a video that fails after its keyframes went to the model: the others are
    embedded, the failed one leaves no row, image or vector."""
    bad = badmedia.truncated(videos / "bikes_10s_640x272_h264.mp4", tmp_path, 0.5)
    good = videos / SMALL[1]
    with open_catalogue(cfg) as cat:
        sink, progress = _sink_opening_after_decoding(cfg, cat, cfg)
        try:
            summary = ingest(cfg, cat, [bad, good], progress=progress, sink=sink)
            sink.close()
            in_milvus = sink.ready().ids()
        finally:
            sink.close_store()
        assert [r.status for r in summary.results] == ["failed", "added"]
        assert "truncated" in summary.results[0].message
        (video,) = cat.videos()
        assert Path(video.path) == good.resolve()
        assert in_milvus == {k.id for k in cat.video_keyframes(video.id)} and sink.embedded == len(in_milvus) > 0
    assert_consistent(cfg)


def test_a_failed_videos_queued_batches_do_not_fail_the_next_video(tmp_path):
    """Batches of a failed video still queued behind the model are cancelled; the next video's
    batches go through the same backlog and must not trip over them."""
    cfg = make_config(tmp_path, "sqlite")
    with open_catalogue(cfg) as cat:
        sink = EmbedSink(cfg, cat, Embedder.from_config(cfg), lambda: VectorStore(cfg))
        try:
            gate = threading.Event()
            sink.pool.submit(gate.wait)  # the model is busy: the next batches queue behind it
            image = np.full((120, 160, 3), 100, np.uint8)
            for _ in range(2 * sink.batch):
                sink.add(image, str(tmp_path / "gone" / "000000.jpg"))  # a folder removed meanwhile: no features kept
            sink.drop_video()
            gate.set()
            for _ in range(sink.batch):
                sink.add(image, str(tmp_path / "gone" / "000000.jpg"))  # a folder removed meanwhile: no features kept
            (batch,) = sink.end_video()
            assert batch.result().shape[0] == sink.batch
        finally:
            sink.close_store()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are per thread on Linux only")
def test_the_embedding_thread_yields_the_cpu_to_the_decoder(tmp_path):
    cfg = make_config(tmp_path, "sqlite")
    with open_catalogue(cfg) as cat:
        sink = EmbedSink(cfg, cat, Embedder.from_config(cfg), lambda: VectorStore(cfg))
        try:
            nice = sink.pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
        finally:
            sink.close_store()
    assert nice > os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_milvus_failing_after_videos_were_decoded_leaves_nothing(cfg, videos):
    down = dataclasses.replace(cfg, milvus=dataclasses.replace(cfg.milvus, uri="http://127.0.0.1:1"))
    with open_catalogue(cfg) as cat:
        sink, progress = _sink_opening_after_decoding(cfg, cat, down)
        try:
            with pytest.raises(VectorStoreError, match="cannot use Milvus at http://127.0.0.1:1"):
                ingest(cfg, cat, [videos / n for n in SMALL[:3]], progress=progress, sink=sink)
        finally:
            sink.close_store()
        assert cat.videos() == [] and cat.counts()["keyframes"] == 0
    assert not any(keyframe_files(cfg.data_path).values())


def test_create_cli_exit_codes_and_json(cfg, videos, tmp_path):
    bad = badmedia.random_bytes(tmp_path, "junk.webm")
    res = run_script("Create.py", str(videos / "spiral_1s_240p_av1.avi"), str(bad), "--json", env=config_env(cfg))
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    assert (out["added"], out["failed"], out["skipped"]) == (1, 1, 0)
    assert out["keyframes"] >= 1 and out["speed_x_realtime"] > 0
    err_lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and "junk.webm" in err_lines[0]
    again = run_script("Create.py", str(videos / "spiral_1s_240p_av1.avi"), env=config_env(cfg))
    assert again.returncode == 0 and "skipped 1" in again.stdout


def test_killed_ingest_resumes_to_the_same_library(cfg, videos, tmp_path):
    long_clip = videos / "intel_one_by_one_person_432p_h264.mp4"
    files = [videos / "carphone_qcif_h264.mp4", long_clip]
    proc = subprocess.Popen([sys.executable, str(CODE / "Create.py"), *map(str, files), "--quiet"],
                            env=config_env(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    with open_catalogue(cfg) as cat:
        while time.monotonic() < deadline:  # kill while the long clip is half ingested
            if any(v.status == "ingesting" and v.path == str(long_clip) for v in cat.videos()) \
                    and any(cfg.data_path.glob("keyframes/*/*/*.jpg")):
                time.sleep(0.3)
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        statuses = {Path(v.path).name: v.status for v in cat.videos()}
        assert statuses.get(long_clip.name) == "ingesting", statuses
        resumed = ingest(cfg, cat, files)
        assert {Path(r.path).name: r.status for r in resumed.results} == \
               {"carphone_qcif_h264.mp4": "exists", long_clip.name: "added"}
    assert_consistent(cfg)
    fresh = make_config(tmp_path / "fresh", "sqlite")
    with open_catalogue(fresh) as cat:
        ingest(fresh, cat, files)
    assert library_snapshot(cfg) == library_snapshot(fresh)


def test_folder_walk_survives_symlink_loop_and_empty_dirs(cfg, videos, tmp_path):
    lib = tmp_path / "lib with spaces ünïcode"
    (lib / "sub").mkdir(parents=True)
    (lib / "empty").mkdir()
    shutil.copy(videos / "spiral_1s_240p_av1.avi", lib / "sub" / "clip ✓.avi")
    (lib / "sub" / "README.txt").write_text("not picked up from a folder")
    (lib / "sub" / "loop").symlink_to(lib, target_is_directory=True)
    with open_catalogue(cfg) as cat:
        summary = ingest(cfg, cat, [lib])
    assert [(Path(r.path).name, r.status) for r in summary.results] == [("clip ✓.avi", "added")]
    empty = run_script("Create.py", str(lib / "empty"), env=config_env(cfg))
    assert empty.returncode == 0 and "added 0" in empty.stdout


def _create_procs(cfg: Config, args_list: list[list[str]]) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, str(CODE / "Create.py"), *args, "--json", "--quiet"],
                              env=config_env(cfg), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in args_list]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    return [json.loads(o[0]) for o in outs]


def test_two_creates_on_one_folder_never_double_ingest(cfg, videos, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in SMALL:
        (folder / name).symlink_to(videos / name)
    docs = _create_procs(cfg, [[str(folder)], [str(folder)]])
    assert sum(d["added"] for d in docs) == len(SMALL)
    with open_catalogue(cfg) as cat:
        assert len(cat.videos()) == len(SMALL) and all(v.status == "ready" for v in cat.videos())
        again = ingest(cfg, cat, [folder])
        ingest_statuses = {r.status for r in again.results}
    assert ingest_statuses == {"exists"}
    assert_consistent(cfg)


def test_disjoint_shards_from_two_workers_make_one_library(cfg, videos, tmp_path):
    docs = _create_procs(cfg, [[str(videos / n) for n in SMALL] + ["--shard", f"{i}/2"] for i in range(2)])
    assert [d["added"] for d in docs] == [3, 2]
    with open_catalogue(cfg) as cat:
        vids = cat.videos()
        kf_ids = [k.id for k in cat.keyframes()]
    assert len(vids) == len(SMALL) and len(kf_ids) == len(set(kf_ids))
    fresh = make_config(tmp_path / "one", "sqlite")
    with open_catalogue(fresh) as cat:
        ingest(fresh, cat, [videos / n for n in SMALL])
    assert library_snapshot(cfg) == library_snapshot(fresh)
    assert_consistent(cfg)
