"""Check.py's drift detection and repair, with faults made by hand, on both catalogues."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import need_videos
from utils.catalogue import VideoMeta, open_catalogue, owner_id
from utils.check import find_drift, repair
from utils.embed_job import embed_library, embed_pending
from utils.embedder import Embedder
from utils.ingest import ingest
from utils.vectorstore import ModelInfo, VectorStore

CLIPS = ["spiral_1s_240p_av1.avi", "mdn_flower_540p_vp8.webm", "carphone_qcif_h264.mp4"]


@pytest.fixture
def library(cfg):
    videos = need_videos()
    with open_catalogue(cfg) as cat:
        ingest(cfg, cat, [videos / c for c in CLIPS])
        embed_library(cfg, cat)
        embedder = Embedder.from_config(cfg)
        with VectorStore(cfg) as store:
            yield cfg, cat, store, embedder


def test_clean_library_has_no_drift(library):
    cfg, cat, store, embedder = library
    assert find_drift(cfg, cat, store, ModelInfo.of(embedder)).clean


def test_every_fault_found_and_repaired(library):
    cfg, cat, store, embedder = library
    model = ModelInfo.of(embedder)
    videos = {v.path.rsplit("/", 1)[-1]: v for v in cat.videos()}
    flower = cat.video_keyframes(videos["mdn_flower_540p_vp8.webm"].id)
    carphone = videos["carphone_qcif_h264.mp4"]
    # 1. a vector whose row is gone, 2. a flagged row whose vector is gone, 3. an unflagged vector
    store.upsert([999_999], [42], [1.0], np.eye(1, embedder.dim, dtype=np.float32))
    store.delete_ids([flower[0].id])
    cat.mark_embedded([flower[1].id], False)
    # 4. a stray file, 5. a missing file, 6. a dead ingest, 7. a half-done delete
    stray = cfg.data_path / "keyframes" / "000" / "77" / "000000.jpg"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    (cfg.data_path / cat.video_keyframes(carphone.id)[0].image_path).unlink()
    dead = cat.claim_video(VideoMeta("/gone.mp4", "f" * 64, 1, "mp4", "h264", 2, 2, 25.0, 1.0),
                           "otherhost:1", 600).video
    cat.touch(dead.id, "otherhost:1")
    cat.mark_deleting(videos["spiral_1s_240p_av1.avi"].id)
    store.flush()

    drift = find_drift(cfg, cat, store, model)
    assert drift.vectors_without_rows == [999_999]
    assert drift.rows_without_vectors == [flower[0].id]
    assert drift.vectors_not_flagged == [flower[1].id]
    assert drift.files_without_rows == ["keyframes/000/77/000000.jpg"]
    assert drift.rows_without_files == [cat.video_keyframes(carphone.id)[0].id]
    assert drift.unfinished_deletes == [videos["spiral_1s_240p_av1.avi"].id]
    assert drift.unfinished_ingests == []  # owned by another host and not stale: left alone

    done = repair(cfg, cat, store, drift)
    embed_pending(cfg, cat, store, embedder)
    assert done["videos_to_reingest"] == [carphone.path]
    after = find_drift(cfg, cat, store, model)
    assert after.clean, after
    assert cat.video(videos["spiral_1s_240p_av1.avi"].id) is None and cat.video(carphone.id) is None
    assert store.ids() == {k.id for k in cat.keyframes()}
    assert cat.video(dead.id) is not None  # another worker's live ingest is never touched
    cat.discard_video(dead.id)


def test_dead_local_ingest_is_found(library):
    cfg, cat, store, embedder = library
    claim = cat.claim_video(VideoMeta("/x.mp4", "e" * 64, 1, "mp4", "h264", 2, 2, 25.0, 1.0),
                            f"{owner_id().rsplit(':', 1)[0]}:999999999", 600)
    drift = find_drift(cfg, cat, store, ModelInfo.of(embedder))
    assert drift.unfinished_ingests == [claim.video.id]
    repair(cfg, cat, store, drift)
    assert cat.video(claim.video.id) is None and find_drift(cfg, cat, store, ModelInfo.of(embedder)).clean
