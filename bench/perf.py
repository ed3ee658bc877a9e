#!/usr/bin/env python3
"""Performance benchmark (issue 8): ingest against the decode limit, embedding, search at scale, memory.

    python bench/perf.py [--quick] [--scale 100000,1000000] [--out bench/results/perf.md] [--budget SECONDS]

Measures, side by side in one run, on the shared clips (../shared/data/videos):
1. the limits: a bare PyAV decode of the same files (no conversion, no writing, no model), full decode
   with ``thread_type="AUTO"``, ``skip_frame="NONREF"`` and the loop filter skipped off keyframes (what full
   mode decodes with ``keyframes.skip_nonref`` and ``skip_loop_filter``)
   and ``"NONKEY"`` decodes, and a decode of only the packets the container marks as keyframes (how
   iframes mode reads), in video-seconds per wall-second;
2. our ingest: Create + Insert2Milvus end to end (``ingest()`` then ``embed_library()``, in-process in a
   fresh worker, start-up imports included) on a temp data dir (SQLite + Milvus Lite), in full coverage
   mode and in ``keyframes.mode: iframes``; x real time, keyframes/s, the ratio to the bare decode and the
   time per stage (the project's functions wrapped with timers in the worker; code/ is not modified);
   plus the keyframe extractor alone (decode + selection + RGB conversion, nothing written). The two
   full-coverage ingests (then Insert2Milvus, and Create --embed) run ``--repeat`` times each (3), in turn,
   and the run of median wall time is reported with the others' times: one run on a shared 2-core machine
   can be 10 % off either way;
3. embedding throughput alone: int8 and fp32 on the CPU at batch 1 and 32 (and CUDA when onnxruntime has it);
4. search: Searcher end to end on the real library (embedding included, refine off and on), and the accuracy
   of the product's vectors (256-d: the model's 1280-d features through the shipped projection) against
   the raw 1280-d features on that library; then vector search at scale on synthetic vectors of the product's
   dimension (the captured library vectors plus noise, L2-normalised): Milvus Lite 2.5 (FLAT, the product's
   default on Lite, and IVF_FLAT) at the first --scale, built in one process and searched from a fresh one;
   Milvus standalone (``milvus-server`` from PyPI via .ci/milvus.sh, port 29530; HNSW, its default, and
   IVF_FLAT) up to the last --scale, within a time budget: what does not fit is measured at the largest size
   that does, and the report says so; p50/p95/p99 at nq=1, throughput at nq=32, recall@10 against exact
   search, and with the query embedding included (one image = the image and its mirror, as Searcher embeds);
5. memory: peak RSS of every worker (ingest, search) plus that of Milvus Lite's engine (a ``milvus`` child
   process of the worker), the Milvus server's VmRSS/VmHWM.

Every measurement runs in its own process (bench/perf_work.py), so each peak RSS is its own. The markdown
table is printed and written with the machine it ran on (nproc, CPU, RAM, load, date, command).
``--quick`` (8 short clips, 5k/20k vectors) takes about two minutes, for development.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(__file__).resolve().parent / "perf_work.py"
CLIPS = ROOT.parent / "shared" / "data" / "videos"
MILVUS_SH = ROOT / ".ci" / "milvus.sh"
SERVER_PORT = 29530
VIDEO_EXT = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".flv",
             ".wmv", ".3gp", ".ogv", ".vob", ".mxf"}
QUICK_CLIPS = ["bbb_5s_720p_h264.mp4", "bbb_5s_1080p_hevc.ts", "bbb_trim_5s_180p_vp9.webm", "mdn_flower_540p_vp8.webm",
               "chaplin_360p_h264.mp4", "spiral_1s_240p_av1.avi", "mdn_elf_480p_h264.mp4", "mdn_crystal_480p_h264.mp4"]
LITE_INDEXES = ["IVF_FLAT", "FLAT"]  # FLAT (the product's default on Lite) last: the serving run searches it
SERVER_INDEXES = ["HNSW", "IVF_FLAT"]  # HNSW is the product's default on a server

# Priors for planning (rows/s at 256-d on an idle 2-core machine); replaced by what this run measures.
PRIOR_RATES = {
    ("lite", "insert"): 12000, ("lite", "IVF_FLAT"): 40000, ("lite", "FLAT"): 40000,
    ("server", "insert"): 10000, ("server", "IVF_FLAT"): 10000, ("server", "HNSW"): 5000,
}


def log(msg: str) -> None:
    print(f"[perf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ machine
def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    versions = {}
    for mod in ("av", "onnxruntime", "numpy", "cv2", "pymilvus", "milvus_lite", "faiss"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = "-"
    try:
        server = subprocess.run([sys.executable, "-m", "pip", "show", "milvus"], capture_output=True, text=True,
                                timeout=30).stdout
        versions["milvus-server"] = next((ln.split(":", 1)[1].strip() for ln in server.splitlines()
                                          if ln.startswith("Version")), "-")
    except Exception:  # noqa: BLE001
        versions["milvus-server"] = "-"
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "code", "config.yaml"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit = head + (" (+ uncommitted changes in code/ or config.yaml)" if dirty else "")
    except Exception:  # noqa: BLE001
        commit = "-"
    return {"commit": commit, "nproc": str(os.cpu_count()), "affinity": str(len(os.sched_getaffinity(0))), "cpu": cpu, "ram": mem,
            "os": platform.platform(), "python": platform.python_version(),
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items())}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


# ------------------------------------------------------------------------------------------ workers
def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time among those that succeeded (of two, the slower), with every run's wall
    time in ``repeats_wall_s`` (in run order): on a shared machine one run can be 10 % off either way, so a
    figure near a target should not be one draw. The first failure when none succeeded."""
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return runs[0]
    median = dict(sorted(ok, key=lambda r: r["wall_s"])[len(ok) // 2])
    median["repeats_wall_s"] = [r["wall_s"] for r in ok]
    median["repeats_failed"] = len(runs) - len(ok)
    return median


class Runner:
    def __init__(self, tmp: Path, deadline: float):
        self.tmp = tmp
        self.deadline = deadline
        self.count = 0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, worker: str, timeout: float | None = None, **job: Any) -> dict[str, Any]:
        self.count += 1
        job_path = self.tmp / f"job{self.count:02d}_{worker}.json"
        result_path = self.tmp / f"job{self.count:02d}_{worker}.result.json"
        job.update({"worker": worker, "result_path": str(result_path)})
        job_path.write_text(json.dumps(job))
        limit = timeout if timeout is not None else max(60.0, self.left() + 120)
        t0 = time.perf_counter()
        try:
            subprocess.run([sys.executable, str(WORK), str(job_path)], timeout=limit, check=False,
                           stdout=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {limit:.0f} s", "proc_s": time.perf_counter() - t0}
        try:
            res = json.loads(result_path.read_text())
        except (OSError, ValueError) as exc:
            res = {"ok": False, "error": f"worker died without a result ({exc})"}
        res["proc_s"] = time.perf_counter() - t0
        if not res.get("ok"):
            log(f"{worker} failed: {res.get('error')}")
        return res


# ------------------------------------------------------------------------------------------ planning
class Rates:
    """rows/s per (store, step), learnt from this run, falling back to priors."""

    def __init__(self, overhead: float) -> None:
        self.seen: dict[tuple[str, str], tuple[float, int]] = {}
        self.overhead = overhead

    def learn(self, store: str, step: str, rate: float | None, n: int) -> None:
        if rate and rate > 0:
            self.seen[(store, step)] = (rate, n)

    def get(self, store: str, step: str) -> tuple[float, int]:
        """(rows/s, rows it was measured at; 0 for a prior)."""
        if (store, step) in self.seen:
            return self.seen[(store, step)]
        # a measured ratio of this run to the prior on any step of this store says how fast this machine is now
        ratios = [r / PRIOR_RATES[k] for k, (r, _) in self.seen.items() if k in PRIOR_RATES and k[0] == store]
        speed = min(2.0, max(0.2, sum(ratios) / len(ratios))) if ratios else 1.0
        return PRIOR_RATES.get((store, step), 1000) * speed, 0

    def cost(self, store: str, n: int, indexes: list[str]) -> float:
        """Projected seconds for insert + index builds + searches of n rows.

        HNSW builds grow a little faster than n (log n levels); IVF builds much slower than n (k-means trains on
        a sample; measured here: 100k -> 300k rows x 256-d took 2.1x the time), so (n/n0)^0.7."""
        insert = n / self.get(store, "insert")[0]
        build = 0.0
        for ix in indexes:
            r, n0 = self.get(store, ix)
            if n0 and n > n0 and ix.startswith("IVF"):
                build += n0 / r * (n / n0) ** 0.7
            elif n0 and n > n0 and ix.startswith("HNSW"):
                build += n / r * (1.0 + 0.12 * math.log2(n / n0))
            else:
                build += n / r
        return (insert + build) * 1.1 + self.overhead  # + ground truth, load, searches


def pick_n(rates: Rates, store: str, candidates: list[int], indexes: list[str], budget: float
           ) -> tuple[int | None, float]:
    for n in candidates:
        c = rates.cost(store, n, indexes)
        if c <= budget:
            return n, c
    return None, rates.cost(store, candidates[-1], indexes) if candidates else 0.0


# ------------------------------------------------------------------------------------------ server
def server_start(d: Path, tries: int = 3) -> tuple[int | None, str]:
    """Start milvus-server; its ports may be held for a while by another user's test server: wait and retry."""
    for attempt in range(tries):
        r = subprocess.run(["bash", str(MILVUS_SH), "start", str(d), str(SERVER_PORT)], capture_output=True,
                           text=True, timeout=150)
        text = (r.stderr or r.stdout).strip()
        if r.returncode == 0:
            break
        if "already in use" not in text or attempt == tries - 1:
            return None, text.splitlines()[-1] if text else "failed"
        log("Milvus ports busy (another server running); retrying in 30 s")
        time.sleep(30)
    try:
        pid = int((d / "milvus-standalone.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    return pid, r.stdout.strip()


def server_stop(d: Path) -> None:
    subprocess.run(["bash", str(MILVUS_SH), "stop", str(d)], capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------ the run
def parse_scale(text: str) -> list[int]:
    return sorted({int(float(x)) for x in text.split(",") if x.strip()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--quick", action="store_true", help="8 short clips, small scale: about two minutes")
    ap.add_argument("--scale", help="vector counts: the first for Milvus Lite, up to the last on the server "
                                     "(default 100000,1000000; --quick 5000,20000)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "perf.md"), help="markdown report path")
    ap.add_argument("--clips", default=str(CLIPS), help="folder of videos (default: the shared clips)")
    ap.add_argument("--budget", type=float, help="seconds for the whole run (default 1500; --quick 200)")
    ap.add_argument("--repeat", type=int, help="runs of each full-coverage ingest, the median reported "
                                                "(default 3; --quick 1)")
    ap.add_argument("--no-server", action="store_true", help="skip the Milvus standalone part")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (data dirs, worker results)")
    ap.add_argument("--report-from", help=argparse.SUPPRESS)  # re-render: TMP/results.json (+ TMP/machine.json)
    args = ap.parse_args()
    if args.report_from:
        src = Path(args.report_from)
        md = report(json.loads((src.parent / "machine.json").read_text()), json.loads(src.read_text()))
        print(md)
        Path(args.out).write_text(md)
        return 0
    quick = args.quick
    repeats = args.repeat or (1 if quick else 3)
    scale = parse_scale(args.scale or ("5000,20000" if quick else "100000,1000000"))
    budget = args.budget or (200.0 if quick else 1500.0)
    t_run = time.monotonic()
    runner = Runner(Path(tempfile.mkdtemp(prefix="p4v-perf-")), t_run + budget)
    tmp = runner.tmp
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    info = machine()
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info["command"] = command
    info["load_start"] = loadavg()
    log(f"temp dir {tmp}; load average {info['load_start']}; budget {budget:.0f} s")

    clips = Path(args.clips)
    files = sorted(p for p in clips.iterdir() if p.suffix.lower() in VIDEO_EXT and p.is_file())
    if quick:
        files = [p for p in files if p.name in QUICK_CLIPS] or files[:8]
    if not files:
        print(f"no videos in {clips}", file=sys.stderr)
        return 2
    for p in files:  # page cache warm for everyone: the first run measured must not pay the disk
        p.read_bytes()
    fl = [str(p) for p in files]
    R: dict[str, Any] = {"files": len(files), "scale": scale, "quick": quick}
    nq = 50 if quick else 200

    # 1. limits, ingest, extractor ----------------------------------------------------------------
    log(f"bare decode of {len(files)} files (full, NONREF, NONKEY, keyframe packets)")
    R["decode_full"] = runner.run("decode", files=fl, mode="full")
    R["decode_nonref"] = runner.run("decode", files=fl, mode="nonref")
    R["decode_nonkey"] = runner.run("decode", files=fl, mode="nonkey")
    R["decode_keypackets"] = runner.run("decode", files=fl, mode="keypackets")
    lib = tmp / "lib_full"
    capture = str(tmp / "real_vectors.npz")
    after: list[dict[str, Any]] = []
    overlap: list[dict[str, Any]] = []
    for i in range(repeats):  # the two ways in turn, so that a slow minute of a shared machine hits both
        log(f"ingest end to end, full coverage: Create, then Insert2Milvus (run {i + 1} of {repeats})")
        after.append(runner.run("ingest", files=fl, mode="full", embed="after", data_dir=str(lib if i == 0 else
                                tmp / f"lib_full_{i + 1}"), capture=i == 0, capture_path=capture))
        log(f"ingest end to end, full coverage: Create --embed, embedding while decoding (run {i + 1} of {repeats})")
        overlap.append(runner.run("ingest", files=fl, mode="full", embed="overlap", data_dir=str(tmp / f"lib_overlap_{i + 1}")))
    for i in range(1, repeats):  # only the first run's library is searched below
        shutil.rmtree(tmp / f"lib_full_{i + 1}", ignore_errors=True)
    for i in range(repeats):
        shutil.rmtree(tmp / f"lib_overlap_{i + 1}", ignore_errors=True)
    R["ingest_full"], R["ingest_overlap"] = median_run(after), median_run(overlap)
    log("the same, storing keyframes' ORB features for Search (keyframes.store_features=true)")
    R["ingest_overlap_features"] = runner.run("ingest", files=fl, mode="full", embed="overlap", store_features=True,
                                              data_dir=str(tmp / "lib_features"))
    log("ingest end to end, keyframes.mode=iframes")
    how = "overlap" if R["ingest_overlap"].get("ok") else "after"
    R["ingest_iframes"] = runner.run("ingest", files=fl, mode="iframes", embed=how, data_dir=str(tmp / "lib_iframes"))
    log("keyframe extractor alone (nothing written)")
    R["extract_full"] = runner.run("extract", files=fl, mode="full", tmp=str(tmp / "x"))
    log("bare full decode again (the load may have changed during the ingest)")
    R["decode_full2"] = runner.run("decode", files=fl, mode="full")
    have_lib = after[0].get("ok") and Path(capture).exists()  # the first run's library, its vectors captured

    # 2. embedding, e2e search on the real library ------------------------------------------------
    if have_lib:
        log("embedding throughput")
        R["embed"] = runner.run("embed", data_dir=str(lib), n=[24, 96] if quick else [64, 256])
        log("search on the real library (Searcher, embedding included; projected vs raw vectors)")
        R["e2e"] = runner.run("e2e", data_dir=str(lib), files=fl, capture_path=capture,
                              n_queries=20 if quick else 60, n_refine=5 if quick else 15)

    # 3. vector search at scale, in the product's dimension (the captured library vectors) --------------
    rates = Rates(8.0 if quick else 25.0)
    R["store"] = []
    if have_lib:
        dim = int(after[0]["vector_dim"])
        n_lite = scale[0]
        n_big = scale[-1]
        left = runner.left()
        server_share = 0.0 if args.no_server else 0.55
        lite_budget = max(60.0, (left - 30) * (1 - server_share))
        lite_deadline = time.monotonic() + lite_budget
        log(f"Milvus Lite at {n_lite}: budget {lite_budget:.0f} s")
        common = {"real_path": capture, "lib_dir": str(lib), "nq1": nq, "batches": 10 if quick else 20}

        def gt_for(n: int) -> str:
            path = str(tmp / f"gt_{n}.npz")
            if not Path(path).exists():
                g = runner.run("groundtruth", real_path=capture, n=n, nq=nq, gt_path=path)
                if not g.get("ok"):
                    raise RuntimeError(f"ground truth: {g.get('error')}")
            return path

        def store_case(kind: str, candidates: list[int], indexes: list[str], deadline: float, label: str,
                       serve: bool = False, **extra: Any) -> None:
            """Build and search ``indexes`` at the first of ``candidates`` that fits before ``deadline``;
            ``serve``: then search the last index from a fresh process (with the query embedding)."""
            left = deadline - time.monotonic() - ((15 if quick else 40) if serve else 0)
            n, cost = pick_n(rates, kind, candidates, indexes, left)
            if n is None:
                R["store"].append({"store": kind, "dim": dim, "indexes": indexes, "skipped": True, "label": label,
                                   "reason": f"projected {cost:.0f} s at {candidates[-1]:,} rows > {max(left, 0):.0f} s "
                                             "left in its budget"})
                log(f"skip {kind} {indexes}: projected {cost:.0f} s > {left:.0f} s")
                return
            log(f"{kind} {dim}-d n={n:,} {indexes} (projected {cost:.0f} s, {left:.0f} s left)")
            try:
                gt = gt_for(n)
            except RuntimeError as exc:
                R["store"].append({"store": kind, "dim": dim, "indexes": indexes, "n": n, "ok": False,
                                   "error": str(exc), "label": label})
                return
            where = tmp / f"{kind}_{n}"
            job = dict(common, n=n, gt_path=gt, indexes=indexes, collection="perf", data_dir=str(where),
                       build=True, search=True, n_e2e=0, uri=str(where / "milvus.db"))
            job.update(extra)
            res = runner.run("store", timeout=max(120.0, cost * 3) + 60, **job)
            res.update({"store": kind, "label": label, "requested": candidates[0], "projected_s": cost})
            if res.get("ok"):
                rates.learn(kind, "insert", res.get("insert_rate"), n)
                for c in res["cases"]:
                    rates.learn(kind, c["index"], c.get("build_rate"), n)
                if serve:  # a fresh process opens the built library and searches, as a user's Search.py would
                    res["serve"] = runner.run("store", timeout=300, **dict(job, build=False, indexes=[indexes[-1]],
                                                                          n_e2e=20 if quick else 60))
            R["store"].append(res)

        # Lite: FLAT (the product's default there) and IVF_FLAT, then searched from a fresh process
        store_case("lite", [n_lite], LITE_INDEXES, lite_deadline, "Lite", serve=True)
        # exact search costs in proportion to the rows: the same at a tenth of the size
        if n_lite >= 20_000:
            store_case("lite", [n_lite // 10], ["FLAT"], lite_deadline + 30, "Lite (size check)")

        # Server: calibrate at the Lite size, then the largest size that fits: HNSW, and IVF_FLAT if time allows.
        if not args.no_server and shutil.which("milvus-server"):
            sdir = tmp / "milvus_server"
            log("starting milvus-server")
            pid, msg = server_start(sdir)
            R["server_start"] = msg
            if pid is None:
                log(f"milvus-server did not start: {msg}")
            else:
                try:
                    srv = {"uri": f"http://127.0.0.1:{SERVER_PORT}", "server_pid": pid, "drop_after": True}
                    sdead = runner.deadline - 20
                    big = sorted({n for n in (n_big, n_big // 2, n_big // 4) if n > n_lite}, reverse=True)
                    big = [n for n in big if n * dim * 4 * 3 / 2**30 < mem_available_gb() * 0.7]
                    store_case("server", [n_lite], SERVER_INDEXES, sdead, "server", **srv)
                    if big:
                        n_both, _ = pick_n(rates, "server", big[:1], SERVER_INDEXES, sdead - time.monotonic())
                        indexes = SERVER_INDEXES if n_both else ["HNSW"]
                        store_case("server", big, indexes, sdead, "server", n_e2e=20 if quick else 60, **srv)
                        if "IVF_FLAT" not in indexes:
                            store_case("server", big, ["IVF_FLAT"], sdead, "server (IVF_FLAT at the largest size "
                                       "that fits what is left)", **srv)
                finally:
                    from perf_work import proc_mem_mb  # the workers' reader; imported late: it loads numpy

                    R["server_mem_final"] = proc_mem_mb(pid)
                    log("stopping milvus-server")
                    server_stop(sdir)

    info["load_end"] = loadavg()
    R["total_s"] = time.monotonic() - t_run
    (tmp / "results.json").write_text(json.dumps(R, indent=1, default=float))
    (tmp / "machine.json").write_text(json.dumps(info, indent=1))
    md = report(info, R)
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    log(f"wrote {out} ({R['total_s']:.0f} s)")
    if args.keep:
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


# ------------------------------------------------------------------------------------------ report
def f1(x: Any, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{nd}f}"


def table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def rss_text(r: dict[str, Any]) -> str:
    """A worker's peak RSS: Python's own, + Milvus Lite's engine process when it opened a Lite database."""
    engine = r.get("lite_engine_mb")
    return f1(r.get("peak_rss_mb"), 0) + (f" + {engine:,.0f}" if engine else "")


def report(info: dict[str, str], R: dict[str, Any]) -> str:
    L: list[str] = ["# Picture4Video performance (issue 8)", ""]
    L += [f"- date: {info['date']}", f"- command: `{info['command']}`",
          f"- machine: {info['nproc']} CPUs (affinity {info['affinity']}), {info['cpu']}, {info['ram']} RAM; "
          f"{info['os']}, Python {info['python']}",
          f"- load average (1/5/15 min) at start: {info['load_start']}, at end: {info['load_end']}",
          f"- versions: {info['versions']}",
          f"- code: commit {info.get('commit', '-')}",
          f"- clips: {R['files']} files of {f1(R['decode_full'].get('video_s'))} s of video; wall time of the benchmark "
          f"{R['total_s'] / 60:.1f} min", ""]

    dec = [R.get("decode_full", {}), R.get("decode_full2", {})]
    dec_ok = [d for d in dec if d.get("ok")]
    ref_x = sum(d["x_realtime"] for d in dec_ok) / len(dec_ok) if dec_ok else None
    nonref, nonkey, keypackets = R.get("decode_nonref", {}), R.get("decode_nonkey", {}), R.get("decode_keypackets", {})
    ing, ifr, ext = R.get("ingest_full", {}), R.get("ingest_iframes", {}), R.get("extract_full", {})
    ovl = R.get("ingest_overlap", {})
    ifr_how = "Create --embed" if ifr.get("embed") == "overlap" else "Create, then Insert2Milvus"

    # -- summary against the targets
    L += ["## Against the targets of issue 8", ""]
    rows = []

    def target(name: str, value: str, goal: str, met: bool | None) -> None:
        rows.append([name, value, goal, "-" if met is None else ("yes" if met else "**no**")])

    for r, how in ((ing, "Create, then Insert2Milvus"), (ovl, "Create --embed")):
        if r.get("ok") and ref_x:
            target(f"ingest full coverage ({how}), x real time", f"{r['x_realtime']:.1f}x", ">= 35x",
                   r["x_realtime"] >= 35)
            target(f"ingest full coverage ({how}) / bare full decode", f"{ref_x / r['x_realtime']:.2f}x the time",
                   "<= 1.5x", ref_x / r["x_realtime"] <= 1.5)
            if nonref.get("ok"):
                target(f"ingest full coverage ({how}) / bare NONREF + no-deblock decode (what full mode decodes)",
                       f"{nonref['x_realtime'] / r['x_realtime']:.2f}x the time", "-", None)
    if ifr.get("ok"):
        target(f"ingest iframes mode ({ifr_how}), x real time", f"{ifr['x_realtime']:.1f}x", ">= 100x",
               ifr["x_realtime"] >= 100)
        for limit, name in ((nonkey, "NONKEY"), (keypackets, "keyframe-packet")):
            if limit.get("ok"):
                target(f"ingest iframes mode ({ifr_how}) / bare {name} decode",
                       f"{limit['x_realtime'] / ifr['x_realtime']:.2f}x the time", "-", None)
    srv_best, lite_best = _best_cases(R)
    for n, name, case in srv_best:
        at_1m = n >= 1_000_000
        target(f"server {name} vector search p50 (nq=1, {n:,} vectors)", f"{case['nq1']['p50_ms']:.1f} ms",
               "<= 15 ms at 1M", case["nq1"]["p50_ms"] <= 15 if at_1m else None)
        target(f"server {name} vector search p99 (nq=1, {n:,} vectors)", f"{case['nq1']['p99_ms']:.1f} ms",
               "<= 40 ms at 1M", case["nq1"]["p99_ms"] <= 40 if at_1m else None)
    for n, name, case, mem in lite_best:
        at_100k = n >= 100_000
        target(f"Lite {name} vector search p50 (nq=1, {n:,} vectors)", f"{case['nq1']['p50_ms']:.1f} ms",
               "<= 30 ms at 100k", case["nq1"]["p50_ms"] <= 30 if at_100k else None)
        if "with_embedding" in case:
            target(f"Lite {name} search incl. query embedding p50 ({n:,}, fresh search process)",
                   f"{case['with_embedding']['p50_ms']:.1f} ms", "<= 60 ms at 100k",
                   case["with_embedding"]["p50_ms"] <= 60 if at_100k else None)
        if mem:
            py, engine = mem
            target(f"Lite {name} peak RSS of the search process, Python + Lite engine ({n:,})",
                   f"{py:,.0f} + {engine:,.0f} = {py + engine:,.0f} MB", "<= 2 GB at 100k",
                   py + engine <= 2048 if at_100k else None)
    emb = R.get("embed", {})
    if emb.get("ok"):
        cuda = [c for c in emb["cases"] if c.get("provider") == "CUDAExecutionProvider"]
        if cuda:
            best = max(c["images_per_s"] for c in cuda)
            target("GPU embedding (CUDA, fp32, batched)", f"{best:,.0f} images/s", ">= 2,000 keyframes/s", best >= 2000)
        else:
            target("GPU embedding (CUDA, fp32, batched)", "not measured here (no CUDA provider): bench/gpu.py on a "
                   "GPU machine, figures in bench/results/gpu.md",
                   ">= 2,000 keyframes/s", None)
    e2e = R.get("e2e", {})
    if e2e.get("ok"):
        off = "/".join(e2e.get("toggles", []))
        target(f"Searcher on the real library incl. query embedding, p50 ({off or 'as configured'} off)",
               f"{e2e['searcher_off']['p50_ms']:.1f} ms", "<= 60 ms", e2e["searcher_off"]["p50_ms"] <= 60)
        if e2e.get("searcher_default"):
            target("Searcher on the real library, p50 as configured "
                   f"({'/'.join(e2e.get('toggles_on_by_default', []))} on)",
                   f"{e2e['searcher_default']['p50_ms']:.1f} ms", "<= 100 ms (issue 7: re-ranking included)",
                   e2e["searcher_default"]["p50_ms"] <= 100)
        proj = e2e.get("projection")
        if proj:
            target(f"vector size, {proj['dim']}-d {proj['name']} (top-1 video {proj['top1_video']:.0%} vs "
                   f"{proj['top1_video_raw']:.0%} with the raw {proj['raw_dim']}-d features)",
                   f"{proj['dim'] * 4:,} B (raw: {proj['raw_dim'] * 4:,} B)", "<= 1 KB if accuracy holds",
                   proj["dim"] * 4 <= 1024 and proj["top1_video"] >= proj["top1_video_raw"] - 0.02)
        else:
            target("vector size (no projection configured)", f"{e2e['vector_dim'] * 4:,} B", "<= 1 KB if accuracy holds",
                   e2e["vector_dim"] * 4 <= 1024)
    L += [table(["target", "measured", "goal", "met"], rows), ""]

    # -- decode & ingest
    L += ["## Decode limit and ingest (same files, same run)", ""]
    rows = []

    def drow(name: str, r: dict[str, Any], kf: Any = None, kfs: Any = None) -> None:
        if not r.get("ok"):
            rows.append([name, "failed: " + str(r.get("error")), "", "", "", "", "", ""])
            return
        ratio = ref_x / r["x_realtime"] if ref_x else None
        runs = r.get("repeats_wall_s", [])
        if len(runs) > 1:
            name += (f" (median of {len(runs)} runs: " + " / ".join(f"{w:.2f}" for w in runs) + " s"
                     + (f"; {r['repeats_failed']} failed" if r.get("repeats_failed") else "") + ")")
        rows.append([name, f1(r["video_s"]), f1(r["wall_s"], 2), f1(r["x_realtime"]), f1(kf, 0) if kf is not None else "-",
                     f1(kfs) if kfs is not None else "-", f1(ratio, 2) if ratio else "-", rss_text(r)])

    drow("bare PyAV decode, full (thread_type AUTO)", R.get("decode_full", {}))
    drow("bare PyAV decode, full (repeated after the ingest)", R.get("decode_full2", {}))
    drow("bare PyAV decode, skip_frame NONREF, loop filter off keyframes skipped (as full mode decodes: "
         "keyframes.skip_nonref, skip_loop_filter)", nonref)
    drow("bare PyAV decode, skip_frame NONKEY", nonkey)
    drow("bare PyAV decode, keyframe packets only (as iframes mode reads)", keypackets)
    drow("keyframe extractor alone (decode + selection + RGB, nothing written)", ext, ext.get("keyframes"),
         ext.get("keyframes", 0) / ext["wall_s"] if ext.get("ok") else None)
    drow("**ingest end to end, full**: Create, then Insert2Milvus", ing, ing.get("keyframes"), ing.get("keyframes_per_s"))
    drow("**ingest end to end, full**: Create --embed (embedding thread beside the decoder)", ovl,
         ovl.get("keyframes"), ovl.get("keyframes_per_s"))
    feat = R.get("ingest_overlap_features", {})
    drow("ingest end to end, full: Create --embed, keyframes.store_features=true (ORB features stored for Search)",
         feat, feat.get("keyframes"), feat.get("keyframes_per_s"))
    drow(f"ingest end to end, keyframes.mode=iframes ({ifr_how})", ifr, ifr.get("keyframes"), ifr.get("keyframes_per_s"))
    L += [table(["run", "video s", "wall s", "x real time", "keyframes", "keyframes/s", "wall ÷ bare full decode wall",
                 "peak RSS MB (Python + Lite engine)"], rows), ""]
    notes = []
    if nonkey.get("nonkey_ignored_by"):
        notes.append("NONKEY is ignored by FFmpeg's VP9 decoder (every frame decoded) for: "
                     + ", ".join(nonkey["nonkey_ignored_by"]))
    if ing.get("ok"):
        notes.append(f"full ingest: {ing['keyframes']} keyframes from {ing['frames_decoded']} decoded frames "
                     f"({ing['keyframes'] / max(1, ing['frames_decoded']):.1%}), {ing['embedded']} embedded; "
                     f"ingest() {ing['ingest_s']:.1f} s + embed_library() {ing['embed_s']:.1f} s + start-up "
                     f"{ing['startup_s']:.1f} s")
        if ing.get("failed"):
            notes.append("failed files: " + "; ".join(ing["failed"]))
    if ovl.get("ok"):
        notes.append(f"Create --embed: ingest() with the embedding sink {ovl['ingest_s']:.1f} s + embed_pending() "
                     f"{ovl['embed_s']:.1f} s + start-up {ovl['startup_s']:.1f} s")
    elif ovl:
        notes.append(f"Create --embed: not measured ({ovl.get('error')})")
    if ifr.get("ok"):
        notes.append(f"iframes ingest ({ifr_how}): ingest() {ifr['ingest_s']:.1f} s + embedding after it "
                     f"{ifr['embed_s']:.1f} s + start-up {ifr['startup_s']:.1f} s")
    L += [f"- {n}" for n in notes] + [""]

    # -- stages
    for key, title in (("ingest_full", "full coverage, Create then Insert2Milvus"),
                       ("ingest_overlap", "full coverage, Create --embed"), ("ingest_iframes", f"iframes mode, {ifr_how}")):
        r = R.get(key, {})
        if not r.get("ok"):
            continue
        L += [f"### Time per stage, ingest {title} ({r['wall_s']:.1f} s wall)", ""]
        srows = [[s["stage"], f1(s["s"], 2), f"{100 * s['share']:.1f} %"] for s in r["stages"]]
        L += [table(["stage", "seconds", "share of wall"], srows), ""]
        groups = {"decode (demux + decode, open/probe)": ("demux + decode", "open + probe"),
                  "keyframe selection + RGB conversion": ("keyframe selection", "colour conversion"),
                  "JPEG write + catalogue + hash": ("JPEG encode", "catalogue", "file hash"),
                  "embedding (JPEG read, border cut, preprocess, inference, model load)": (
                      "JPEG read", "border cut", "preprocess", "embedding inference", "model load"),
                  "Milvus (open, upsert, flush/load)": ("Milvus",)}
        gsum = {g: sum(x["s"] for x in r["stages"] if x["stage"].startswith(prefixes)) for g, prefixes in groups.items()}
        top = max(gsum, key=gsum.get)
        L += ["- by group: " + "; ".join(f"{g} {v:.1f} s ({100 * v / r['wall_s']:.0f} %)" for g, v in gsum.items()),
              f"- **bottleneck: {top}**, {100 * gsum[top] / r['wall_s']:.0f} % of the wall time", ""]
        other = next((x["s"] for x in r["stages"] if x["stage"].startswith("other")), 0.0)
        if r.get("embed") == "overlap":
            L += ["- embedding runs in a thread beside the decoder here: the stage times are busy time and add up to "
                  f"more than the wall time; the main thread spent {r.get('sink_commit_s', 0):.1f} s in "
                  "EmbedSink.commit (the upserts and flags of the videos whose vectors were ready)", ""]
        elif other < -0.05 * r["wall_s"]:
            L += ["- Insert2Milvus reads and embeds in threads beside the Milvus upserts (and opens Milvus beside "
                  "the first batch): its stage times are busy time and add up to more than the wall time", ""]
        if r.get("missing_hooks"):
            L += [f"- not instrumented (function not found): {', '.join(r['missing_hooks'])}", ""]
    L += ["Stage times come from timers wrapped around the project's functions in the worker process "
          "(`bench/perf_work.py: instrument_ingest`): demux + decode is the decoder generator's own time minus the "
          "luma thumbnails; colour conversion is `keyframes.to_rgb` (the `to_ndarray(rgb24, 480 px, AREA)` call). "
          "Create converts and writes keyframes in a thread beside the decoder, so those two stages are busy "
          "time too (\"other\" is what no timer saw, less what overlapped); Insert2Milvus reads the next batch's JPEGs and "
          "embeds it in threads while the last batch goes to Milvus, so its stages are busy time; with Create "
          "--embed the embedding thread overlaps the decoder and the shares are busy time. "
          "FFmpeg's frame threads keep decoding while Python works on a frame, so \"demux + decode\" is the time "
          "the main thread waits for frames, not the decoder's CPU time (compare the bare decode and the "
          "extractor-alone rows above).", ""]

    # -- embedding
    emb = R.get("embed", {})
    if emb.get("ok"):
        L += ["## Embedding throughput alone (EfficientNet-Lite0, images in memory, preprocessing included)", ""]
        erows = []
        for c in emb["cases"]:
            if "error" in c:
                erows.append([c["variant"], c["device"], str(c["batch"]), "failed: " + c["error"], "", ""])
            else:
                erows.append([c["variant"], c.get("provider", c["device"]), str(c["batch"]), f1(c["images_per_s"]),
                              f1(c["ms_per_image"], 2), f"{100 * c['preprocess_share']:.0f} %"])
        L += [table(["model", "provider", "batch", "images/s", "ms/image", "of which preprocessing"], erows), ""]

    # -- what the numbers imply for the ingest targets
    if ing.get("ok") and ref_x and emb.get("ok"):
        int8 = [c for c in emb["cases"] if c.get("variant") == "int8" and c.get("batch") == 32 and "images_per_s" in c]
        if int8:
            rate = int8[0]["images_per_s"]
            goal_s = ing["video_s"] / 35
            dec_s = ing["video_s"] / ref_x
            L += ["### What the numbers imply", "",
                  f"- 35x real time over these {ing['video_s']:.0f} s of video means the whole ingest in {goal_s:.1f} s; "
                  f"the bare full decode alone takes {dec_s:.1f} s of it (both cores), 1.5x that is {1.5 * dec_s:.1f} s.",
                  f"- embedding the {ing['keyframes']} keyframes at the measured int8 batch-32 rate ({rate:.0f} images/s "
                  f"with both cores) takes {ing['keyframes'] / rate:.1f} s by itself: even perfectly overlapped with "
                  f"decoding, the CPU work is about {dec_s + ing['keyframes'] / rate:.1f} s "
                  f"({ing['video_s'] / (dec_s + ing['keyframes'] / rate):.0f}x real time); to fit {goal_s:.1f} s the "
                  f"embedding would need about {ing['keyframes'] / max(goal_s - dec_s, 0.1):.0f} images/s next to the "
                  f"decode, or {ing['keyframes'] / ing['video_s'] * 60:.0f} keyframes per video-minute would have to shrink.",
                  f"- within 1.5x of the bare decode ({1.5 * dec_s:.1f} s) everything beyond decoding (keyframe selection, "
                  f"RGB conversion, JPEG, catalogue, embedding, Milvus) must fit in {0.5 * dec_s:.1f} s of wall time: "
                  f"{1000 * 0.5 * dec_s / max(1, ing['keyframes']):.1f} ms per keyframe, or about "
                  f"{max(1, ing['keyframes']) / (0.5 * dec_s):.0f} keyframes/s for the whole rest of the pipeline.",
                  ""]

    # -- search, real library
    if e2e.get("ok"):
        L += [f"## Search on the real library ({e2e['library_vectors']} keyframes, {e2e['vector_dim']}-d, Milvus Lite "
              f"{e2e['index_type']}; {e2e['n_queries']} screenshots = frames at random times, CPU)", ""]
        rows = []
        on = ", ".join(e2e.get("toggles_on_by_default", [])) or "nothing optional"
        off = ", ".join(e2e.get("toggles", [])) or "nothing"
        for key, name in (("query_views", "border cut + mirror of the query (query_views)"),
                          ("embed_2views", "query embedding (image + mirror, int8, CPU, projection included)"),
                          ("vector_nq1", "vector search only (nq=1, limit 50)"),
                          ("searcher_off", f"Searcher.search with {off} off (embedding + Milvus + ranking + catalogue)"),
                          ("searcher_default", f"Searcher.search as configured ({on} on)")):
            s = e2e.get(key)
            if not s:
                continue
            rows.append([name, f1(s["p50_ms"]), f1(s["p95_ms"]), f1(s["p99_ms"]), str(s["n"])])
        L += [table(["what", "p50 ms", "p95 ms", "p99 ms", "queries"], rows), ""]
        dflt = e2e.get("top1_video_default")
        L += [f"- top-1 video right (the video or another encode of its footage, as bench/eval_search.py counts it): "
              f"{e2e['top1_video_off']:.0%} with {off} off"
              + (f", {dflt:.0%} as configured (first {e2e['searcher_default']['n']} queries)" if dflt is not None else "")
              + f"; peak RSS of this search process {rss_text(e2e)} MB (Python + Lite engine)"]
        proj = e2e.get("projection")
        if proj:
            L += [f"- the product's vectors against the raw model features, brute force over the same {proj['library']:,} "
                  f"library keyframe images and {proj['queries']} queries (one view each): top-1 video "
                  f"{proj['top1_video']:.0%} with the {proj['dim']}-d vectors as stored ({proj['name']}, the shipped "
                  f"projection, fitted on {proj['fitted_on']:,} keyframe pictures and their edits, model.json), "
                  f"{proj['top1_video_raw']:.0%} with the "
                  f"raw {proj['raw_dim']}-d features; {proj['dim'] * 4:,} vs {proj['raw_dim'] * 4:,} bytes a vector"]
        L += [""]

    # -- search at scale
    if R.get("store"):
        dim = next((r["dim"] for r in R["store"] if r.get("dim")), 0)
        L += [f"## Vector search at scale (synthetic vectors in the product's {dim}-d space: library vectors + noise, "
              "L2-normalised; COSINE)", ""]
        rows = []
        notes = []
        for r in R["store"]:
            if r.get("skipped"):
                notes.append(f"{r['label']} {r['dim']}-d {'/'.join(r['indexes'])}: not run, {r['reason']}")
                continue
            if not r.get("ok"):
                notes.append(f"{r.get('label')} {r.get('dim')}-d: failed: {r.get('error')}")
                continue
            if r["n"] < r.get("requested", r["n"]):
                notes.append(f"{r['label']} {r['dim']}-d: {r['n']:,} vectors instead of {r['requested']:,} "
                             f"(the largest size that fitted the time budget)")
            serve = r.get("serve", {})
            for c in r["cases"]:
                if "error" in c:
                    rows.append([r["label"], c["index"], str(r["dim"]), f"{r['n']:,}", "failed: " + c["error"]] + [""] * 8)
                    continue
                mem = c.get("server_mem_mb", {}).get("VmRSS")
                rss = f"server {mem:,.0f}" if mem else f"{rss_text(r)} (build+search)"
                rows.append([r["label"], c["index"], str(r["dim"]), f"{r['n']:,}",
                             f1(r.get("insert_s", 0) + r.get("flush_s", 0), 0), f1(c.get("build_s"), 0),
                             f1(c["nq1"]["p50_ms"]), f1(c["nq1"]["p95_ms"]), f1(c["nq1"]["p99_ms"]),
                             f1(c["nq32_qps"], 0), f1(c.get("recall_at_10"), 3),
                             f1(c["with_embedding"]["p50_ms"]) if "with_embedding" in c else "-", rss])
            if serve.get("ok"):
                for c in serve["cases"]:
                    rows.append([r["label"] + ", fresh search process", c["index"], str(r["dim"]), f"{r['n']:,}",
                                 "-", f"load {f1(c.get('load_s'), 1)}", f1(c["nq1"]["p50_ms"]), f1(c["nq1"]["p95_ms"]),
                                 f1(c["nq1"]["p99_ms"]), f1(c["nq32_qps"], 0), f1(c.get("recall_at_10"), 3),
                                 f1(c["with_embedding"]["p50_ms"]) if "with_embedding" in c else "-",
                                 f"{rss_text(serve)} (search only)"])
            elif serve:
                notes.append(f"{r['label']} search process failed: {serve.get('error')}")
            p50 = {c["index"]: c["nq1"]["p50_ms"] for c in r["cases"] if "nq1" in c}
            if r["store"] == "lite" and "IVF_FLAT" in p50 and "FLAT" in p50 and p50["IVF_FLAT"] > 0.5 * p50["FLAT"]:
                notes.append(f"{r['label']} at {r['n']:,}: IVF_FLAT ({p50['IVF_FLAT']:.1f} ms) no faster than FLAT "
                             f"({p50['FLAT']:.1f} ms): Milvus Lite 2.5 builds indexes on sealed segments only and "
                             "searches the rows it has not sealed by brute force, and a collection this small stays "
                             "unsealed (checked while writing this benchmark, 256-d: at 50k rows IVF_FLAT = FLAT, "
                             "about 10 ms; at 100k sealed and indexed, IVF_FLAT 1.5-1.8 ms)")
            for c in r["cases"]:
                q = c.get("nq1")
                if q and q["p99_ms"] > 10 * q["p50_ms"] and q["p99_ms"] > 50:
                    notes.append(f"{r['label']} {c['index']} {r['dim']}-d at {r['n']:,}: p95/p99 ({q['p95_ms']:.0f}/"
                                 f"{q['p99_ms']:.0f} ms) far above p50 ({q['p50_ms']:.1f} ms): queries timed while the "
                                 "store was still busy in the background (segment handoff/compaction after the load) "
                                 "or the machine was; the worker waits 5 s and warms up for 2 s before timing")
        L += [table(["store", "index", "dim", "vectors", "insert s", "index build s", "p50 ms", "p95 ms", "p99 ms",
                     "nq=32 queries/s", "recall@10", "p50 ms incl. query embedding",
                     "peak RSS MB (Lite: Python + engine)"], rows), ""]
        L += ["- search as VectorStore.search does it: limit 50 (search.candidates), output video_id + timestamp, "
              "the project's index parameters: FLAT (exact; the default on Milvus Lite), IVF_FLAT nlist=1024 "
              "nprobe=32 (Milvus Lite 2.5 ignores nprobe: its IVF recall is what it is), HNSW M=16 efConstruction=200 "
              "ef=64 (the default on a server); recall@10 against exact brute force over the same vectors; "
              "\"incl. query embedding\" = embed the image and its mirror as Searcher does (int8, CPU, the shipped "
              "projection included) and search both (nq=2)",
              f"- vectors: each is a library vector as the product stores it ({dim}-d, captured during the ingest) "
              "plus isotropic Gaussian noise (norm 0.5, cosine ~0.89 to its source), queries the same with noise 0.3; "
              f"{dim * 4:,} bytes a vector",
              "- Lite peak RSS: the worker's Python process (ru_maxrss) + Milvus Lite's engine, the `milvus` child "
              "process Lite 2.5 runs beside Python (its VmHWM), each at its own peak; the server's is its VmRSS"]
        flat_p50 = {}
        for r in R["store"]:
            if r.get("ok") and r.get("store") == "lite":
                for c in r["cases"]:
                    if c.get("index") == "FLAT" and "nq1" in c:
                        flat_p50.setdefault(r["n"], c["nq1"]["p50_ms"])
        if len(flat_p50) >= 2:
            (n0, p0), (n1, p1) = sorted(flat_p50.items())[0], sorted(flat_p50.items())[-1]
            per_row = (p1 - p0) / (n1 - n0) * 1e6  # ns per row
            L += [f"- Milvus Lite FLAT is exact search, its cost in proportion to the rows: {p0:.1f} ms at {n0:,}, "
                  f"{p1:.1f} ms at {n1:,} vectors (about {per_row:.0f} ns per stored row and query at {dim}-d; 30 ms "
                  f"is reached near {round(n0 + (30 - p0) / max(per_row, 1e-9) * 1e6, -3):,.0f} rows). Batching "
                  "amortises it (see nq=32 queries/s)."]
        L += ["- Milvus Lite 3.x (pure Python), measured by the previous run of this benchmark: about 44 ms p50 at "
              "100k x 256-d whatever the index (each query walked every primary key in Python), the reason for the "
              "switch to Lite 2.5 (the embedded C++ Milvus)"]
        if R.get("server_start"):
            L += [f"- Milvus standalone: {R['server_start']}; its memory at the end: "
                  f"{', '.join(f'{k} {v:,.0f} MB' for k, v in R.get('server_mem_final', {}).items()) or '-'}"]
        L += [f"- {n}" for n in notes] + [""]
    return "\n".join(L) + "\n"


def _best_cases(R: dict[str, Any]) -> tuple[list[tuple[int, str, dict[str, Any]]],
                                            list[tuple[int, str, dict[str, Any], tuple[float, float] | None]]]:
    """The store cases for the targets table: per server index the largest size measured, as (n, name, case);
    every Lite case as (n, name, case, (Python, engine) peak RSS MB of the fresh search process or None), the
    query-embedding latency taken from that process where it searched the same index."""
    srv: dict[str, tuple[int, str, dict[str, Any]]] = {}
    lite = []
    for r in R.get("store", []):
        if not r.get("ok"):
            continue
        for c in r["cases"]:
            if "error" in c or "nq1" not in c:
                continue
            name = f"{r['dim']}-d {c['index']}"
            if c["index"] != "FLAT" and c.get("recall_at_10") is not None:
                name += f" (recall@10 {c['recall_at_10']:.2f})"
            if r["store"] == "server":
                if c["index"] not in srv or r["n"] > srv[c["index"]][0]:
                    srv[c["index"]] = (r["n"], name, c)
                continue
            mem = None
            serve = r.get("serve", {})
            if serve.get("ok") and serve["cases"] and serve["cases"][0]["index"] == c["index"]:
                c = dict(c, **{k: v for k, v in serve["cases"][0].items() if k == "with_embedding"})
                mem = (serve["peak_rss_mb"], serve.get("lite_engine_mb", 0.0))
            lite.append((r["n"], name, c, mem))
    return list(srv.values()), lite


if __name__ == "__main__":
    sys.exit(main())
