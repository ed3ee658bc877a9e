"""The task scripts as a user runs them: exit codes, one-line errors, --json documents, reports.

Milvus Lite lets one process open a database at a time, so the library here is built and read only
by the scripts (subprocesses), never by the test process itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import CODE, config_env, drop_mysql_database, make_config, need_videos, run_script
from utils.catalogue import open_catalogue

CLIPS = ["mdn_flower_540p_h264.mp4", "bikes_10s_640x272_h264.mp4", "spiral_1s_240p_mpeg4.avi"]
SEARCH_KEYS = {"video_id", "video_path", "timestamp", "from", "to", "score", "keyframe_id", "keyframe_path"}


def write_frame(video: Path, t: float, out: Path) -> Path:
    with av.open(str(video)) as c:
        for f in c.decode(c.streams.video[0]):
            if f.time >= t:
                cv2.imwrite(str(out), f.to_ndarray(format="bgr24"))
                return out
    raise AssertionError("no frame")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    videos = need_videos()
    tmp = tmp_path_factory.mktemp("cli")
    cfg = make_config(tmp, "sqlite")
    env = config_env(cfg)
    res = run_script("Create.py", "--embed", "--json", *[str(videos / c) for c in CLIPS], env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["added"] == 3 and doc["embedding"]["embedded"] == doc["keyframes"]
    return cfg, env, tmp, {Path(f["path"]).name: f["video_id"] for f in doc["files"]}


def test_insert2milvus_rerun_inserts_nothing(library):
    _, env, _, _ = library
    res = run_script("Insert2Milvus.py", "--json", env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["embedded"] == 0 and doc["already_embedded"] > 0


def test_search_json_and_report(library, videos):
    _, env, tmp, ids = library
    q = write_frame(videos / "mdn_flower_540p_h264.mp4", 2.4, tmp / "flower <script>.jpg")
    report = tmp / "report.html"
    res = run_script("Search.py", str(q), "--json", "--report", str(report), env=env)
    assert res.returncode == 0, res.stderr
    (doc,) = json.loads(res.stdout)
    assert doc["query"] == str(q)
    top = doc["results"][0]
    assert set(top) == SEARCH_KEYS
    assert top["video_id"] == ids["mdn_flower_540p_h264.mp4"] and abs(top["timestamp"] - 2.4) <= 0.5
    assert top["from"] <= top["timestamp"] <= top["to"] and Path(top["keyframe_path"]).is_file()
    page = report.read_text()
    assert "<script>" not in page and "flower &lt;script&gt;.jpg" in page and "data:image/jpeg;base64," in page
    table = run_script("Search.py", str(q), env=env)
    assert table.returncode == 0 and "mdn_flower_540p_h264.mp4" in table.stdout and "score" in table.stdout


def test_search_bad_inputs_one_line_each_rest_answered(library, videos):
    _, env, tmp, _ = library
    good = write_frame(videos / "bikes_10s_640x272_h264.mp4", 3.3, tmp / "good.png")
    empty = tmp / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp / "notes.png"
    text.write_text("not an image")
    truncated = tmp / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[:300] if good.suffix == ".jpg" else
                          cv2.imencode(".jpg", cv2.imread(str(good)))[1].tobytes()[:2000])
    big = tmp / "big.png"
    cv2.imwrite(str(big), np.zeros((3000, 3000, 3), np.uint8))
    line = tmp / "line.png"
    cv2.imwrite(str(line), cv2.imread(str(good))[:1])
    blank = tmp / "blank.png"
    cv2.imwrite(str(blank), np.zeros((270, 480, 3), np.uint8))
    no_time = f"{videos / 'bikes_10s_640x272_h264.mp4'}@nan"
    whole_video = str(videos / "bikes_10s_640x272_h264.mp4")
    args = [str(good), str(empty), str(text), str(truncated), str(tmp / "missing.jpg"), str(big), str(line),
            str(blank), no_time, whole_video, "--json"]
    res = run_script("Search.py", *args, env={**env, "P4V_SEARCH__MAX_IMAGE_PIXELS": "4000000"})
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 9, res.stderr
    for name, words in [("empty.jpg", "empty"), ("notes.png", "not an image"), ("cut.jpg", "truncated"),
                        ("missing.jpg", "no such file"), ("big.png", "over the limit"), ("line.png", "too small"),
                        ("blank.png", "blank"), ("@nan", "needs a number of seconds"),
                        ("h264.mp4:", "a video; name one of its frames as")]:
        assert any(name in e and words in e for e in errors), (name, errors)
    (doc,) = json.loads(res.stdout)
    assert doc["query"] == str(good) and doc["results"]


def test_search_folders_and_many_images_answered_in_order(library, videos):
    """Folders are searched for image files (recursively, other files left out); a missing file and a
    folder without images fail alone with one line each; more images than Search.py reads at once
    are all answered, in order."""
    _, env, tmp, _ = library
    shots = tmp / "shots"
    (shots / "more").mkdir(parents=True)
    (shots / "notes.txt").write_text("not a picture")
    frames = [write_frame(videos / "bikes_10s_640x272_h264.mp4", 0.5 + i * 0.25,
                          shots / ("more" if i >= 14 else "") / f"many{i:02d}.png") for i in range(20)]
    (tmp / "empty folder").mkdir()
    args = [str(f) for f in frames[:3]] + [str(shots / "more"), str(tmp / "missing.png"), str(tmp / "empty folder")]
    res = run_script("Search.py", *args, "--json", "--top-k", "1", env=env)
    assert res.returncode == 1 and res.stderr.count("error:") == 2, res.stderr
    assert "missing.png: no such file" in res.stderr and "empty folder: no image files" in res.stderr
    docs = json.loads(res.stdout)
    assert [d["query"] for d in docs] == [str(f) for f in frames[:3] + frames[14:]]
    res = run_script("Search.py", str(shots), "--json", "--top-k", "1", env=env)  # a folder, recursively
    assert res.returncode == 0, res.stderr
    docs = json.loads(res.stdout)
    assert [d["query"] for d in docs] == [str(f) for f in frames]  # a folder's own files, then its subfolders
    assert all(d["results"][0]["video_path"].endswith("bikes_10s_640x272_h264.mp4") for d in docs)


def test_report_that_cannot_be_written_is_one_line_after_the_answers(library, videos):
    _, env, tmp, _ = library
    q = write_frame(videos / "bikes_10s_640x272_h264.mp4", 2.0, tmp / "r.png")
    res = run_script("Search.py", str(q), "--report", str(tmp), env=env)  # a folder
    assert res.returncode == 1 and "bikes_10s_640x272_h264.mp4" in res.stdout
    assert res.stderr.strip().splitlines()[-1] == f"error: cannot write the report {tmp}: Is a directory"
    assert "Traceback" not in res.stderr


def test_search_empty_library_is_one_clear_error(tmp_path, videos):
    env = config_env(make_config(tmp_path, "sqlite"))
    q = write_frame(videos / "bikes_10s_640x272_h264.mp4", 1.0, tmp_path / "q.jpg")
    res = run_script("Search.py", str(q), env=env)
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith("error: the library is empty")
    assert "Traceback" not in res.stderr


def test_list_shows_the_librarys_videos_ids_and_keyframes(library):
    cfg, env, _, ids = library
    res = run_script("List.py", "--json", env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert {Path(v["path"]).name: v["video_id"] for v in doc} == ids
    with open_catalogue(cfg) as cat:
        for v in doc:
            n = cat.count_keyframes(video_id=v["video_id"])
            assert n > 0 and v["keyframes"] == v["embedded"] == n and v["status"] == "ready"
            assert v["duration"] == pytest.approx(cat.video(v["video_id"]).duration, abs=1e-3)
    table = run_script("List.py", env=env)
    assert table.returncode == 0 and all(name in table.stdout for name in ids)
    assert table.stdout.rstrip().splitlines()[-1].startswith("3 videos, ") and \
        f"{sum(v['keyframes'] for v in doc)} keyframes" in table.stdout


def test_list_picks_by_id_and_path_and_names_unknown_ids(library):
    _, env, _, ids = library
    bikes, spiral = ids["bikes_10s_640x272_h264.mp4"], ids["spiral_1s_240p_mpeg4.avi"]
    res = run_script("List.py", str(spiral), "--match", "BIKES", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert sorted(v["video_id"] for v in json.loads(res.stdout)) == sorted([bikes, spiral])
    res = run_script("List.py", str(bikes), "987654", env=env)
    assert res.returncode == 1 and res.stderr.strip() == "error: no library video has id 987654"
    assert "bikes_10s_640x272_h264.mp4" in res.stdout
    res = run_script("List.py", "--match", "no-such-video", env=env)
    assert res.returncode == 0 and res.stdout.strip() == "no video matches"


def test_a_reader_that_stops_reading_ends_a_script_quietly(library):
    """``List.py | head -1``: the reader has gone before the table is written; no traceback, the shell's 141."""
    import subprocess
    import sys
    _, env, _, _ = library
    p = subprocess.Popen([sys.executable, str(CODE / "List.py")], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(60) == 141 and err == ""


def test_list_on_mysql_says_which_videos_milvus_has(tmp_path, videos, mysql_server):
    """List.py reads the catalogue alone; MariaDB's sums per video, before and after one video is embedded."""
    cfg = make_config(tmp_path, "mysql", mysql_server)
    env = config_env(cfg)
    try:
        made = run_script("Create.py", "--json", *[str(videos / c) for c in CLIPS[1:]], env=env)
        assert made.returncode == 0, made.stderr
        ids = {Path(f["path"]).name: f["video_id"] for f in json.loads(made.stdout)["files"]}

        def listed() -> dict[str, tuple[int, int]]:
            res = run_script("List.py", "--json", env=env)
            assert res.returncode == 0, res.stderr
            return {Path(v["path"]).name: (v["keyframes"], v["embedded"]) for v in json.loads(res.stdout)}

        before = listed()
        assert set(before) == set(ids) and all(k > 0 and e == 0 for k, e in before.values())
        bikes = "bikes_10s_640x272_h264.mp4"
        assert run_script("Insert2Milvus.py", "--video-id", str(ids[bikes]), env=env).returncode == 0
        after = listed()
        assert after[bikes] == (before[bikes][0],) * 2 and after[CLIPS[2]] == before[CLIPS[2]]
    finally:
        drop_mysql_database(cfg)


def test_similarity_cli(library, videos):
    _, env, tmp, _ = library
    a = write_frame(videos / "mdn_flower_540p_h264.mp4", 1.0, tmp / "a.jpg")
    b = write_frame(videos / "mdn_flower_540p_h264.mp4", 1.2, tmp / "b.jpg")
    c = write_frame(videos / "bikes_10s_640x272_h264.mp4", 1.0, tmp / "c.jpg")
    same = json.loads(run_script("Similarity.py", str(a), str(b), "--json", env=env).stdout)
    diff = json.loads(run_script("Similarity.py", str(a), str(c), "--json", env=env).stdout)
    assert set(same) == {"a", "b", "similarity", "same"}
    assert same["same"] is True and diff["same"] is False and same["similarity"] > diff["similarity"]
    frame = json.loads(run_script("Similarity.py", f"{videos / 'mdn_flower_540p_h264.mp4'}@1.0", str(a), "--json",
                                  env=env).stdout)
    assert frame["same"] is True and frame["similarity"] > 0.95  # the frame a.jpg was written from
    kf = json.loads(run_script("Similarity.py", "kf:1", str(a), "--json", env=env).stdout)
    assert -1.0 <= kf["similarity"] <= 1.0
    bad = run_script("Similarity.py", "kf:999999", str(a), env=env)
    assert bad.returncode != 0 and "no keyframe with id 999999" in bad.stderr


def test_ids_and_counts_out_of_range_are_one_line_not_a_traceback(library):
    """A number past 64 bits used to reach the database driver and fail there (OverflowError)."""
    _, env, _, _ = library
    huge = str(2**64)
    for script, args, words in [("Delete.py", [huge], "not an id"), ("Delete.py", ["0"], "not an id"),
                                ("Insert2Milvus.py", ["--video-id", huge], "not an id"),
                                ("Similarity.py", [f"kf:{huge}", f"kf:{huge}"], "a keyframe reference is kf:<number>"),
                                ("Search.py", ["x.png", "--top-k", "-1"], "not a count")]:
        res = run_script(script, *args, env=env)
        assert res.returncode != 0 and words in res.stderr, (script, res.stderr)
        assert "Traceback" not in res.stderr, (script, res.stderr)


def test_delete_cli_complete_and_idempotent(library, videos):
    cfg, env, tmp, ids = library
    vid = ids["spiral_1s_240p_mpeg4.avi"]
    dry = json.loads(run_script("Delete.py", str(vid), "--dry-run", "--json", env=env).stdout)
    assert dry[0]["status"] == "would_delete" and dry[0]["vectors"] == dry[0]["keyframes"] > 0
    res = run_script("Delete.py", str(vid), "--json", env=env)
    assert res.returncode == 0, res.stderr
    (done,) = json.loads(res.stdout)
    assert done["status"] == "deleted" and done["vectors"] == done["files"] == done["keyframes"] == dry[0]["keyframes"]
    assert not (cfg.data_path / "keyframes" / "000" / str(vid)).exists()
    (again,) = json.loads(run_script("Delete.py", str(vid), "--json", env=env).stdout)
    assert again["status"] == "not_found"
    q = write_frame(videos / "spiral_1s_240p_mpeg4.avi", 0.5, tmp / "spiral.jpg")
    found = json.loads(run_script("Search.py", str(q), "--json", "--threshold", "0", "--top-k", "10", env=env).stdout)
    assert vid not in {r["video_id"] for r in found[0]["results"]}
    readd = run_script("Create.py", "--embed", "--json", str(videos / "spiral_1s_240p_mpeg4.avi"), env=env)
    assert json.loads(readd.stdout)["added"] == 1


def test_lite_database_in_use_is_one_clear_error(library, videos, tmp_path):
    _, env, _, _ = library
    import subprocess
    import sys
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from pymilvus import MilvusClient; "
        "MilvusClient(sys.argv[2]); print('open', flush=True); time.sleep(60)"),
        str(Path(__file__).parents[1] / "code"), env["P4V_MILVUS__URI"]], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        res = run_script("Insert2Milvus.py", env=env)
        assert res.returncode != 0
        assert "open in another process" in res.stderr and "Traceback" not in res.stderr
    finally:
        holder.kill()
        holder.wait()


def test_unreachable_mysql_is_one_clear_error(tmp_path):
    env = config_env(make_config(tmp_path, "sqlite"))
    env.update({"P4V_CATALOGUE__BACKEND": "mysql", "P4V_CATALOGUE__MYSQL__PORT": "1",
                "P4V_CATALOGUE__MYSQL__CONNECT_TIMEOUT": "2"})
    res = run_script("Create.py", str(tmp_path), env=env)
    assert res.returncode == 3
    assert res.stderr.strip().startswith("error: catalogue MySQL") and "Traceback" not in res.stderr


def test_servers_profile_mysql_and_milvus_standalone(tmp_path, videos, mysql_server, milvus_server):
    """The same scripts against a real MariaDB and a real Milvus standalone server."""
    cfg = make_config(tmp_path, "mysql", mysql_server, P4V_MILVUS__URI=milvus_server,
                      P4V_MILVUS__COLLECTION=f"p4v_test_{tmp_path.name[-8:].replace('-', '_')}")
    env = {**config_env(cfg), "P4V_MILVUS__URI": milvus_server}
    clip = videos / "bikes_10s_640x272_h264.mp4"
    made = run_script("Create.py", "--embed", "--json", str(clip), env=env)
    assert made.returncode == 0, made.stderr
    q = write_frame(clip, 6.1, tmp_path / "q.jpg")
    (doc,) = json.loads(run_script("Search.py", str(q), "--json", env=env).stdout)
    assert Path(doc["results"][0]["video_path"]).name == clip.name
    from utils.vectorstore import VectorStore
    with VectorStore(cfg) as store:
        desc = store.client.describe_collection(cfg.milvus.collection)
        assert all(f["description"] for f in desc["fields"]) and "Picture4Video" in desc["description"]
        assert store.client.get_load_state(cfg.milvus.collection)["state"].name == "Loaded"
        vid = json.loads(made.stdout)["files"][0]["video_id"]
        (gone,) = json.loads(run_script("Delete.py", str(vid), "--json", env=env).stdout)
        assert gone["status"] == "deleted" and store.ids() == set()
        store.drop()
    drop_mysql_database(cfg)
    shutil.rmtree(cfg.data_path, ignore_errors=True)
