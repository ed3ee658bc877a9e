"""SIGKILL in the middle of Insert2Milvus and Delete, then re-run: the library ends consistent.

The library is touched only by subprocesses (Milvus Lite allows one process per database); the
test process reads the catalogue alone to time its kills, and asks Check.py for the verdict.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CODE, config_env, need_videos, run_script
from utils.catalogue import open_catalogue

CLIPS = ["sintel_trailer_480p_h264.mp4", "bikes_10s_640x272_h264.mp4", "mdn_frog_480p_h264.mp4"]


def check(env: dict[str, str]) -> dict:
    res = run_script("Check.py", "--json", env=env)
    doc = json.loads(res.stdout)
    assert res.returncode == 0, doc
    return doc


def kill_when(cfg, env: dict[str, str], script: str, args: list[str], ready) -> None:
    """Start a script and SIGKILL it as soon as ``ready(catalogue)`` holds (or after 60 s)."""
    proc = subprocess.Popen([sys.executable, str(CODE / script), *args, "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    with open_catalogue(cfg) as cat:
        while time.monotonic() < deadline and proc.poll() is None and not ready(cat):
            time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("after", [0, 1, 100])
def test_killed_insert2milvus_then_rerun_is_consistent(cfg, after):
    """Killed while starting (collection being made), after the first batch, and late."""
    videos = need_videos()
    env = {**config_env(cfg), "P4V_MODEL__BATCH_SIZE": "8"}  # batches of 32 keyframes: many kill points
    assert run_script("Create.py", *[str(videos / c) for c in CLIPS], env=env).returncode == 0
    lite = Path(cfg.milvus_uri)
    assert not lite.exists()  # Create without --embed never opens Milvus
    # at 0: as soon as Milvus Lite's database appears (Milvus opening, the collection being made); a
    # fixed delay was too late on a fast machine, where the whole insert took under 2 s
    kill_when(cfg, env, "Insert2Milvus.py", [],
              lambda cat: cat.counts()["embedded"] >= after if after else lite.exists())
    with open_catalogue(cfg) as cat:
        total, embedded = cat.counts()["keyframes"], cat.counts()["embedded"]
    assert embedded < total  # it really was interrupted
    res = run_script("Insert2Milvus.py", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["embedded"] == total - embedded
    assert check(env)["found"]["clean"] is True


def test_lost_milvus_file_after_a_partial_insert_is_refilled_whole(cfg):
    """Half the keyframes flagged embedded, then the Milvus Lite file is lost: the re-run finds a new
    collection and embeds every keyframe, including those its first look saw as done."""
    videos = need_videos()
    env = {**config_env(cfg), "P4V_MODEL__BATCH_SIZE": "8"}
    assert run_script("Create.py", *[str(videos / c) for c in CLIPS], env=env).returncode == 0
    kill_when(cfg, env, "Insert2Milvus.py", [], lambda cat: cat.counts()["embedded"] >= 64)
    with open_catalogue(cfg) as cat:
        total, embedded = cat.counts()["keyframes"], cat.counts()["embedded"]
    assert 0 < embedded < total
    for p in Path(cfg.milvus_uri).parent.glob(Path(cfg.milvus_uri).name + "*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    res = run_script("Insert2Milvus.py", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["embedded"] == total
    assert check(env)["found"]["clean"] is True


def test_killed_delete_then_rerun_is_consistent(cfg):
    videos = need_videos()
    env = config_env(cfg)
    made = json.loads(run_script("Create.py", "--embed", "--json", *[str(videos / c) for c in CLIPS], env=env).stdout)
    ids = [str(f["video_id"]) for f in made["files"]]
    kill_when(cfg, env, "Delete.py", ids, lambda cat: any(v.status == "deleting" for v in cat.videos()))
    with open_catalogue(cfg) as cat:
        assert len(cat.videos()) >= 1  # interrupted before the last row went
    res = run_script("Delete.py", *ids, "--json", env=env)
    assert res.returncode == 0, res.stderr
    with open_catalogue(cfg) as cat:
        assert cat.videos() == [] and cat.counts()["keyframes"] == 0
    assert check(env)["found"]["clean"] is True
    assert not any((cfg.data_path / "keyframes").glob("*/*/*.jpg"))


def test_killed_create_embed_then_rerun_is_consistent(cfg):
    videos = need_videos()
    env = config_env(cfg)
    args = ["--embed", *[str(videos / c) for c in CLIPS]]
    kill_when(cfg, env, "Create.py", args, lambda cat: cat.counts()["embedded"] > 0)
    res = run_script("Create.py", *args, "--json", env=env)
    assert res.returncode == 0, res.stderr
    with open_catalogue(cfg) as cat:
        assert len(cat.videos()) == len(CLIPS) and cat.count_keyframes(embedded=False) == 0
    assert check(env)["found"]["clean"] is True
