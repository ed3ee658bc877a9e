"""Hostile and unlucky inputs: odd files and names, secrets, EXIF, and a MariaDB that goes away mid-ingest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import badmedia
from conftest import CODE, ROOT, config_env, drop_mysql_database, make_config, need_videos, run_script
from utils.catalogue import open_catalogue
from utils.config import load_config
from utils.images import read_image
from utils.ingest import ingest


def test_single_frame_video_and_sql_hostile_name_ingest(cfg, tmp_path):
    hostile = tmp_path / "it's \"quoted\"; DROP TABLE videos; -- ✓.mp4"
    badmedia.synthetic_video(hostile, seconds=0.04, fps=25)
    with open_catalogue(cfg) as cat:
        (r,) = ingest(cfg, cat, [hostile]).results
        assert (r.status, r.keyframes) == ("added", 1), r
        (v,) = cat.videos()
        assert v.path == str(hostile.resolve())
        k = cat.video_keyframes(v.id)[0]
        assert k.image_path == f"keyframes/000/{v.id}/000000.jpg"  # derived from ids, not from the name


def test_exif_rotated_query_is_read_upright(tmp_path):
    wide = np.zeros((40, 100, 3), np.uint8)
    wide[:, :50] = 255
    p = tmp_path / "rotated.jpg"
    img = Image.fromarray(wide)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(p, exif=exif)
    rgb = read_image(p, 10**8, 10**8)
    assert rgb.shape[:2] == (100, 40)


def test_password_in_config_is_ignored_with_warning_and_never_printed(tmp_path, caplog):
    conf = tmp_path / "c.yaml"
    conf.write_text("catalogue:\n  backend: mysql\n  mysql:\n    port: 1\n    password: hunter2-secret\n")
    with caplog.at_level("WARNING"):
        cfg = load_config(conf, environ={})
    assert cfg.catalogue.mysql.password == "" and "secret" in caplog.text and "hunter2" not in caplog.text
    env = {**config_env(make_config(tmp_path, "sqlite")), "P4V_CONFIG": str(conf),
           "P4V_MYSQL_PASSWORD": "hunter2-from-env", "P4V_CATALOGUE__MYSQL__CONNECT_TIMEOUT": "2"}
    env.pop("P4V_CATALOGUE__BACKEND")
    env.pop("P4V_CATALOGUE__MYSQL__PORT")
    res = run_script("Create.py", str(tmp_path), env=env)
    assert res.returncode == 3 and "hunter2" not in res.stdout + res.stderr


def test_config_mistakes_are_one_line_each(tmp_path):
    """A config file named but missing used to be ignored silently (every setting its default, paths
    relative to the missing file's folder); YAML errors used to print the parser's five-line report."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("data_dir: [unclosed\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("search:\n  top_kk: 5\n")
    for args, words in [(["--config", str(tmp_path / "missing.yaml")], "config file not found"),
                        (["--config", str(broken)], "is not valid YAML at line 2"),
                        (["--config", str(unknown)], "unknown setting 'search.top_kk'")]:
        res = run_script("Search.py", "x.png", *args, env={})
        lines = res.stderr.strip().splitlines()
        assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.stderr


def test_no_password_literal_in_repository_configs():
    for name in ("config.yaml", "config.servers.yaml"):
        text = (ROOT / name).read_text()
        assert "password:" not in text.replace("password_env:", "")


def test_mariadb_stopped_mid_ingest_then_resumed(mysql_server, tmp_path):
    videos = need_videos()
    if not mysql_server.get("dir"):
        pytest.skip("needs a MariaDB this run controls (P4V_TEST_MARIADB_DIR)")
    cfg = make_config(tmp_path, "mysql", mysql_server)
    env = config_env(cfg)
    clips = [videos / n for n in ("carphone_qcif_h264.mp4", "intel_one_by_one_person_432p_h264.mp4",
                                  "bikes_10s_640x272_h264.mp4")]
    script = ["bash", str(ROOT / ".ci" / "mariadb.sh")]
    proc = subprocess.Popen([sys.executable, str(CODE / "Create.py"), *map(str, clips), "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with open_catalogue(cfg) as cat:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(v.status == "ingesting" and "intel" in v.path
                                                          for v in cat.videos()):
                time.sleep(0.02)
        subprocess.run([*script, "stop", mysql_server["dir"]], check=True, stdout=subprocess.DEVNULL)
        out, err = proc.communicate(timeout=120)
    finally:
        subprocess.run([*script, "start", mysql_server["dir"], mysql_server["port"]], check=True,
                       stdout=subprocess.DEVNULL, env={**env, "P4V_MYSQL_PASSWORD": mysql_server["password"]})
    assert proc.returncode == 3, err
    assert err.strip().splitlines()[-1].startswith("error: catalogue MySQL") and "Traceback" not in err
    res = run_script("Create.py", *map(str, clips), "--json", env=env)
    assert res.returncode == 0, res.stderr
    statuses = sorted(f["status"] for f in json.loads(res.stdout)["files"])
    assert statuses in (["added", "added", "exists"], ["added", "added", "added"])
    with open_catalogue(cfg) as cat:
        assert len(cat.videos()) == 3 and all(v.status == "ready" for v in cat.videos())
    drop_mysql_database(cfg)
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


def test_unreachable_milvus_is_one_clear_error_and_changes_nothing(cfg, tmp_path):
    videos = need_videos()
    env = config_env(cfg)
    assert run_script("Create.py", str(videos / "spiral_1s_240p_av1.avi"), env=env).returncode == 0
    with open_catalogue(cfg) as cat:
        before = cat.counts()
    down = {**env, "P4V_MILVUS__URI": "http://127.0.0.1:1"}
    # Create --embed opens Milvus beside the first video's decoding: it must still fail before cataloguing it
    for script, args in (("Insert2Milvus.py", []), ("Delete.py", ["1"]),
                         ("Create.py", ["--embed", str(videos / "carphone_qcif_h264.mp4")])):
        res = run_script(script, *args, env=down, timeout=120)
        assert res.returncode == 4, (script, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert lines[-1].startswith("error: cannot use Milvus at http://127.0.0.1:1") and "Traceback" not in res.stderr
    with open_catalogue(cfg) as cat:
        assert cat.counts() == before and cat.videos()[0].status == "ready"
        assert [Path(v.path).name for v in cat.videos()] == ["spiral_1s_240p_av1.avi"]


def test_lite_3_folder_is_named_not_mistaken_for_a_lock(tmp_path):
    """A library made by Milvus Lite 3.x keeps a folder where Lite 2.5 keeps a file: say so and what to do."""
    from utils.errors import VectorStoreError
    from utils.vectorstore import VectorStore

    cfg = make_config(tmp_path, "sqlite")
    (cfg.data_path / "milvus.db").mkdir(parents=True)
    with pytest.raises(VectorStoreError, match=r"Lite 3\.x database \(a folder\).*Insert2Milvus\.py"):
        VectorStore(cfg)
