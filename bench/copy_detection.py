#!/usr/bin/env python3
"""Copy detection benchmark: VideoRetrieval against FFmpeg's MPEG-7 signature filter, in one run.

    python bench/copy_detection.py [--workdir DIR] [--threshold T]

Builds a library from shared clips in a temporary data dir (SQLite + Milvus Lite), keeps other
clips out as negatives (among them the look-alikes of MANIFEST.md: the mdn_* toys on one table,
intel_asl_book beside intel_asl_again), makes query clips with the ffmpeg CLI (segments
re-encoded smaller, at a lower bitrate or frame rate, in another codec, cropped, letter-boxed,
mirrored, colour-shifted, greyscale, blurred, with burnt-in subtitles; part copies spliced with
unrelated footage; plus negative clips from the held-out videos), then answers every query with
VideoRetrieval (in process, timed per clip) and with ``ffmpeg ... signature=detectmode=full``
run pairwise against every library video (timed per clip: the sum of its pairwise runs).

Prints a markdown table (precision, recall, segment-boundary error, time per query clip) and
writes it, with the per-query detail, to bench/results/copy_detection.md.

Scoring: every reported (query, video) pair is a prediction; it is right when the query was cut
from that video. Precision = right / reported, recall = right / positive queries. Boundary error
= mean |video_start - truth| and |video_end - truth| over right predictions, in seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

import av  # noqa: E402
import numpy as np  # noqa: E402

from utils.catalogue import open_catalogue  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.embed_job import embed_pending  # noqa: E402
from utils.embedder import Embedder  # noqa: E402
from utils.ingest import ingest  # noqa: E402
from utils.retrieval import CopyDetector  # noqa: E402
from utils.vectorstore import VectorStore  # noqa: E402
from utils.video import open_video, probe  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "data" / "videos"
RESULTS = ROOT / "bench" / "results" / "copy_detection.md"

LIBRARY = [
    "sintel_trailer_480p_h264.mp4", "webrtc_chrome_270p_h264.mp4", "cockatoo_720p_h264.mp4",
    "bikes_10s_640x272_h264.mp4", "mediaelement_echo_270p_vp8.webm", "intel_car_detection_432p_h264.mp4",
    "chaplin_360p_h264.mp4", "webrtc_mixed_content_270p_vp8.webm", "mdn_rabbit_480p_h264.mp4",
    "mdn_frog_480p_h264.mp4", "mdn_pig_480p_h264.mp4", "intel_asl_again_480p_h264.mkv",
    "mp4ff_bbb_10s_240p_h264.mp4",
]
# Held out (never ingested): the other toys on the same table, the other sign, other scenes.
HELD_OUT = [
    "mdn_elf_480p_h264.mp4", "mdn_monster_480p_h264.mp4", "mdn_crystal_480p_h264.mp4",
    "intel_asl_book_480p_h264.mkv", "intel_bottle_detection_360p_h264.mp4", "blend_modes_1080p_h264.mp4",
    "mdn_friday_480p_h264.mp4", "portrait_keyboard_1080x1920_h264.mp4",
    "intel_one_by_one_person_432p_h264.mp4", "carphone_qcif_h264.mp4", "smpte_bars_1080p_h264.mp4",
]

SUBTITLE = ("drawtext=text='I have seen this before':fontcolor=white:fontsize=h/14:box=1:boxcolor=black@0.5"
            ":x=(w-text_w)/2:y=h-2*text_h")
LOGO = "drawtext=text='COPY TV':fontcolor=yellow:fontsize=h/12:x=w-text_w-10:y=10"


@dataclass
class Query:
    """One query clip and its truth: the library video it was cut from and where (None = negative)."""

    name: str
    transform: str
    inputs: list[tuple[str, float, float]]  # (shared clip, start, duration) segments, spliced in order
    vf: str = ""  # filter applied to every segment (after trim)
    codec: list[str] = field(default_factory=lambda: ["-c:v", "libx264", "-crf", "28", "-preset", "veryfast"])
    ext: str = ".mp4"
    whole_file: str = ""  # use this shared file as it is
    overlay: tuple[str, float, str] | None = None  # (held-out clip, start, x:y): the segment is an inset over it
    truth: tuple[str, float, float] | None = None  # (library video, video_start, video_end)

    @property
    def positive(self) -> bool:
        return self.truth is not None


def queries() -> list[Query]:
    x265 = ["-c:v", "libx265", "-crf", "30", "-preset", "ultrafast", "-x265-params", "log-level=error"]
    return [
        # positives: a segment of a library video, transformed
        Query("sintel_half_mpeg4", "half resolution, MPEG-4 Part 2 at 250 kb/s",
              [("sintel_trailer_480p_h264.mp4", 20, 6)], "scale=iw/2:-2",
              ["-c:v", "mpeg4", "-b:v", "250k"], ".avi", truth=("sintel_trailer_480p_h264.mp4", 20, 26)),
        Query("chrome_crop_colour_vp8", "cropped to 80 %, brighter and more saturated, VP8",
              [("webrtc_chrome_270p_h264.mp4", 10, 6)], "crop=iw*0.8:ih*0.8,eq=brightness=0.08:saturation=1.5",
              ["-c:v", "libvpx", "-b:v", "400k"], ".webm", truth=("webrtc_chrome_270p_h264.mp4", 10, 16)),
        Query("bbb_small_15fps", "320 px wide, 15 fps, H.264 CRF 36",
              [("mp4ff_bbb_10s_240p_h264.mp4", 3, 5)], "scale=240:-2,fps=15",
              ["-c:v", "libx264", "-crf", "36", "-preset", "veryfast"], truth=("mp4ff_bbb_10s_240p_h264.mp4", 3, 8)),
        Query("cockatoo_subtitles", "burnt-in subtitles, 640 px",
              [("cockatoo_720p_h264.mp4", 3, 6)], f"scale=640:-2,{SUBTITLE}",
              truth=("cockatoo_720p_h264.mp4", 3, 9)),
        Query("bikes_mirror_logo", "mirrored, logo text",
              [("bikes_10s_640x272_h264.mp4", 2, 5)], f"hflip,{LOGO}", truth=("bikes_10s_640x272_h264.mp4", 2, 7)),
        Query("echo_contrast_hevc", "contrast/gamma up, desaturated, HEVC",
              [("mediaelement_echo_270p_vp8.webm", 10, 6)], "eq=contrast=1.3:gamma=1.3:saturation=0.6", x265,
              truth=("mediaelement_echo_270p_vp8.webm", 10, 16)),
        Query("car_letterbox", "letter-boxed into 4:3 with black bars",
              [("intel_car_detection_432p_h264.mp4", 5, 6)], "scale=640:-2,pad=640:480:0:(oh-ih)/2",
              truth=("intel_car_detection_432p_h264.mp4", 5, 11)),
        Query("frog_grey_mpeg4", "greyscale, 360 px, MPEG-4 Part 2",
              [("mdn_frog_480p_h264.mp4", 1, 5)], "hue=s=0,scale=360:-2", ["-c:v", "mpeg4", "-q:v", "6"], ".avi",
              truth=("mdn_frog_480p_h264.mp4", 1, 6)),
        Query("sintel_blur_noise", "blurred and noisy, 24 -> 30 fps",
              [("sintel_trailer_480p_h264.mp4", 33, 5)], "gblur=sigma=1.5,noise=alls=18:allf=t,fps=30",
              truth=("sintel_trailer_480p_h264.mp4", 33, 38)),
        Query("part_chaplin_then_other", "part copy: 4 s of a library video, then 4 s of unrelated footage",
              [("chaplin_360p_h264.mp4", 2, 4), ("blend_modes_1080p_h264.mp4", 0, 4)],
              "scale=480:270,setsar=1,fps=25", truth=("chaplin_360p_h264.mp4", 2, 6)),
        Query("part_other_then_mixed", "part copy: 3 s of unrelated footage, then 5 s of a library video",
              [("intel_bottle_detection_360p_h264.mp4", 5, 3), ("webrtc_mixed_content_270p_vp8.webm", 5, 5)],
              "scale=480:270,setsar=1,fps=25", truth=("webrtc_mixed_content_270p_vp8.webm", 5, 10)),
        Query("sintel_reaction_inset", "reaction video: the segment at 45 % width with a white border, top right, "
              "over held-out footage", [("sintel_trailer_480p_h264.mp4", 40, 8)], "scale=384:-2,pad=iw+8:ih+8:4:4:white",
              overlay=("intel_one_by_one_person_432p_h264.mp4", 60, "W-w-24:24"), truth=("sintel_trailer_480p_h264.mp4", 40, 48)),
        Query("frog_inset_corner", "picture-in-picture: the segment at 40 % width, bottom left, over held-out footage",
              [("mdn_frog_480p_h264.mp4", 1, 5)], "scale=342:-2", overlay=("blend_modes_1080p_h264.mp4", 2, "24:H-h-24"),
              truth=("mdn_frog_480p_h264.mp4", 1, 6)),
        Query("rabbit_240p_file", "another encode found in the wild (mdn_rabbit_240p_h264.mp4, whole file)",
              [], whole_file="mdn_rabbit_240p_h264.mp4", truth=("mdn_rabbit_480p_h264.mp4", 0, 7.8)),
        # negatives: clips of held-out videos (look-alikes first)
        Query("neg_elf", "held-out toy on the same table, half size", [("mdn_elf_480p_h264.mp4", 1, 5)],
              "scale=iw/2:-2"),
        Query("neg_monster", "held-out toy on the same table", [("mdn_monster_480p_h264.mp4", 0, 5)]),
        Query("neg_crystal", "held-out toy on the same table", [("mdn_crystal_480p_h264.mp4", 2, 5)]),
        Query("neg_asl_book", "same room and camera as intel_asl_again, another signer",
              [("intel_asl_book_480p_h264.mkv", 0, 3.6)]),
        Query("neg_bottle", "held-out Intel sample", [("intel_bottle_detection_360p_h264.mp4", 15, 6)]),
        Query("neg_blend", "held-out footage, 640 px", [("blend_modes_1080p_h264.mp4", 2, 5)], "scale=640:-2"),
        Query("neg_friday", "held-out film excerpt", [("mdn_friday_480p_h264.mp4", 0, 6)]),
        Query("neg_keyboard", "held-out portrait footage", [("portrait_keyboard_1080x1920_h264.mp4", 0, 2.1)],
              "scale=-2:640"),
        Query("neg_people", "held-out Intel sample (static camera like intel_car_detection)",
              [("intel_one_by_one_person_432p_h264.mp4", 40, 6)]),
        Query("neg_carphone", "held-out talking head", [("carphone_qcif_h264.mp4", 0, 4)]),
        Query("neg_smpte", "held-out test pattern", [("smpte_bars_1080p_h264.mp4", 2, 5)], "scale=640:-2"),
        Query("neg_elf_inset", "held-out toy (a look-alike of the library's) as an inset over held-out footage",
              [("mdn_elf_480p_h264.mp4", 1, 5)], "scale=342:-2,pad=iw+8:ih+8:4:4:white",
              overlay=("intel_bottle_detection_360p_h264.mp4", 10, "W-w-24:H-h-24")),
    ]


def sh(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def make_query(q: Query, out_dir: Path) -> Path:
    if q.whole_file:
        return VIDEOS / q.whole_file
    path = out_dir / f"{q.name}{q.ext}"
    if path.exists():
        return path
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    for src, _, _ in q.inputs:
        cmd += ["-i", str(VIDEOS / src)]
    parts = []
    for i, (_, start, dur) in enumerate(q.inputs):
        chain = f"trim=start={start}:duration={dur},setpts=PTS-STARTPTS" + (f",{q.vf}" if q.vf else "")
        parts.append(f"[{i}:v]{chain}[s{i}]")
    if q.overlay:
        background, start, position = q.overlay
        cmd += ["-i", str(VIDEOS / background)]
        dur = q.inputs[0][2]
        graph = (f"{parts[0]};[{len(q.inputs)}:v]trim=start={start}:duration={dur},setpts=PTS-STARTPTS,"
                 f"scale=854:480,setsar=1[bg];[bg][s0]overlay={position}:shortest=1[out]")
    elif len(q.inputs) > 1:
        graph = ";".join(parts) + ";" + "".join(f"[s{i}]" for i in range(len(q.inputs))) \
            + f"concat=n={len(q.inputs)}:v=1:a=0[out]"
    else:
        graph = parts[0].replace("[s0]", "[out]")
    cmd += ["-filter_complex", graph, "-map", "[out]", "-an", *q.codec, str(path)]
    r = sh(cmd)
    if r.returncode != 0:
        raise SystemExit(f"ffmpeg failed for {q.name}: {r.stderr.strip()[-500:]}")
    return path


def duration_of(path: Path) -> float:
    with open_video(path) as c:
        return probe(c, path).duration


def fps_of(path: Path) -> float:
    with av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate or c.streams.video[0].guessed_rate
        return float(rate) if rate else 25.0


@dataclass
class Prediction:
    video: str
    video_start: float
    video_end: float
    score: float = 0.0


@dataclass
class Outcome:
    predictions: list[Prediction]
    seconds: float


def run_ours(cfg, cat, store, embedder, paths: dict[str, Path], threshold: float | None) -> dict[str, Outcome]:
    detector = CopyDetector(cfg, cat, store, embedder)
    out: dict[str, Outcome] = {}
    for name, path in paths.items():
        t = time.perf_counter()
        answer = detector.detect(path, threshold, keep_frames=False)
        secs = time.perf_counter() - t
        out[name] = Outcome([Prediction(Path(m.video_path).name, m.video_start, m.video_end, m.score)
                             for m in answer.matches], secs)
    return out


SIG_MATCH = re.compile(r"matching of video 0 at ([\d.]+) and 1 at ([\d.]+), (\d+) frames matching")


def run_signature(paths: dict[str, Path], library: list[str]) -> dict[str, Outcome]:
    """Pairwise ``signature=detectmode=full`` of each query against each library video.

    The filter prints ``matching of video 0 at A and 1 at B, N frames matching`` (plus ``whole
    video matching`` when the match reached both ends): (A, B) is the anchor frame pair its
    evaluation started from, and it walked forwards and then backwards from there, so the anchor
    fixes the time offset B - A but not where the N matching frames begin. The library span is
    therefore the overlap of the two videos at that offset for a whole match, and otherwise
    N / fps seconds centred on B, kept inside that overlap.
    """
    lib_dur = {name: duration_of(VIDEOS / name) for name in library}
    out: dict[str, Outcome] = {}
    for qname, qpath in paths.items():
        q_fps, q_dur = fps_of(qpath), duration_of(qpath)
        preds, secs = [], 0.0
        for name in library:
            cmd = ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "info", "-i", str(qpath), "-i",
                   str(VIDEOS / name), "-filter_complex", "[0:v][1:v]signature=detectmode=full:nb_inputs=2",
                   "-an", "-f", "null", "-"]
            t = time.perf_counter()
            r = sh(cmd)
            secs += time.perf_counter() - t
            found = SIG_MATCH.search(r.stderr)
            if not found:
                continue
            a, b, n = float(found.group(1)), float(found.group(2)), int(found.group(3))
            lo, hi = max(0.0, b - a), min(lib_dur[name], b - a + q_dur)
            if "whole video matching" in r.stderr:
                start, end = lo, hi
            else:
                length = min(n / q_fps, hi - lo)
                start = min(max(b - length / 2, lo), hi - length)
                end = start + length
            preds.append(Prediction(name, start, end, float(n)))
        out[qname] = Outcome(preds, secs)
    return out


@dataclass
class Metrics:
    precision: float
    recall: float
    boundary_error: float
    seconds_per_query: float
    tp: int
    fp: int
    fn: int


def evaluate(qs: list[Query], outcomes: dict[str, Outcome]) -> Metrics:
    tp = fp = 0
    errors: list[float] = []
    for q in qs:
        for p in outcomes[q.name].predictions:
            if q.truth is not None and p.video == q.truth[0]:
                tp += 1
                errors += [abs(p.video_start - q.truth[1]), abs(p.video_end - q.truth[2])]
            else:
                fp += 1
    positives = sum(q.positive for q in qs)
    found = sum(1 for q in qs if q.truth and any(p.video == q.truth[0] for p in outcomes[q.name].predictions))
    return Metrics(tp / (tp + fp) if tp + fp else 1.0, found / positives if positives else 1.0,
                   sum(errors) / len(errors) if errors else float("nan"),
                   sum(o.seconds for o in outcomes.values()) / len(outcomes), tp, fp, positives - found)


def describe(p: list[Prediction], with_score: bool) -> str:
    if not p:
        return "-"
    return "; ".join(f"{x.video.split('_')[0]}_{x.video.split('_')[1]} {x.video_start:.1f}-{x.video_end:.1f}"
                     + (f" ({x.score:.2f})" if with_score else "") for x in p[:2])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--workdir", help="keep the library and query clips here (re-used when present)")
    ap.add_argument("--threshold", type=float, help="VideoRetrieval threshold (default: retrieval.threshold)")
    ap.add_argument("--skip-signature", action="store_true", help="VideoRetrieval only (for tuning; no table file)")
    args = ap.parse_args()
    if not shutil.which("ffmpeg"):
        raise SystemExit("the ffmpeg CLI is needed (apt-get install ffmpeg)")
    if not VIDEOS.is_dir():
        raise SystemExit(f"shared clips not found at {VIDEOS}")
    t_start = time.perf_counter()
    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="p4v-bench-")
        work = Path(tmp.name)
    try:
        env = {**os.environ, "P4V_DATA_DIR": str(work / "data"), "P4V_CATALOGUE__BACKEND": "sqlite",
               "P4V_MILVUS__URI": "milvus.db"}
        cfg = load_config(ROOT / "config.yaml", environ=env)
        qs = queries()
        t = time.perf_counter()
        (work / "queries").mkdir(exist_ok=True)
        paths = {q.name: make_query(q, work / "queries") for q in qs}
        make_s = time.perf_counter() - t
        t = time.perf_counter()
        embedder = Embedder.from_config(cfg)
        embedder.embed([np.zeros((224, 224, 3), np.uint8)])  # onnxruntime's first run is slow: a start-up cost
        # one catalogue and one Milvus Lite connection for building and querying: a Lite database
        # reopened in the same process after a long idle spell has been seen to refuse the client
        with open_catalogue(cfg) as cat, VectorStore(cfg) as store:
            startup = time.perf_counter() - t
            t = time.perf_counter()
            summary = ingest(cfg, cat, [VIDEOS / n for n in LIBRARY])
            if summary.count("failed"):
                raise SystemExit(f"ingest failed: {[r.message for r in summary.results if r.status == 'failed']}")
            embed_pending(cfg, cat, store, embedder)
            build_s = time.perf_counter() - t
            lib_seconds = sum(v.duration for v in cat.videos())
            lib_keyframes = cat.count_keyframes()
            ours = run_ours(cfg, cat, store, embedder, paths, args.threshold)
        sig = run_signature(paths, LIBRARY) if not args.skip_signature else {n: Outcome([], 0.0) for n in paths}
        m_ours, m_sig = evaluate(qs, ours), evaluate(qs, sig)
        threshold = cfg.retrieval.threshold if args.threshold is None else args.threshold
        table = [
            "| method | precision | recall | boundary error (s) | time per query clip (s) | TP / FP / FN |",
            "|---|---|---|---|---|---|",
        ]
        for label, m in ((f"VideoRetrieval (threshold {threshold:g})", m_ours),
                         ("FFmpeg signature (pairwise, detectmode=full)", m_sig)):
            table.append(f"| {label} | {m.precision:.2f} | {m.recall:.2f} | {m.boundary_error:.2f} | "
                         f"{m.seconds_per_query:.2f} | {m.tp} / {m.fp} / {m.fn} |")
        n_pos = sum(q.positive for q in qs)
        notes = [
            f"Library: {len(LIBRARY)} shared clips, {lib_seconds:.0f} s of video "
            f"({lib_keyframes} keyframes); {len(qs)} query clips: {n_pos} copies, {len(qs) - n_pos} negatives "
            f"from {len(HELD_OUT)} held-out clips.",
            f"VideoRetrieval: in process, per clip after a one-off start of {startup:.1f} s (model + Milvus Lite); "
            "FFmpeg signature: the sum of one ffmpeg run per library video.",
            f"Library build {build_s:.0f} s, query clips made in {make_s:.0f} s, "
            f"whole benchmark {time.perf_counter() - t_start:.0f} s on {os.cpu_count()} CPU cores.",
        ]
        detail = ["| query | transform | truth | VideoRetrieval | signature |", "|---|---|---|---|---|"]
        for q in qs:
            truth = f"{q.truth[0].split('_')[0]}_{q.truth[0].split('_')[1]} {q.truth[1]:g}-{q.truth[2]:g}" \
                if q.truth else "not a copy"
            detail.append(f"| {q.name} | {q.transform} | {truth} | {describe(ours[q.name].predictions, True)} | "
                          f"{describe(sig[q.name].predictions, False)} |")
        text = "\n".join(["# Copy detection: VideoRetrieval vs FFmpeg signature", "", *table, "",
                          *[f"- {n}" for n in notes], "", "## Per query", "",
                          "Predictions as `video start-end` (seconds in the library video), "
                          "VideoRetrieval with its score.", "", *detail, ""])
        print("\n".join(table))
        print()
        print("\n".join(notes))
        if args.skip_signature:
            print("\n".join(detail))
        else:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(text, encoding="utf-8")
            print(f"\nwritten to {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
