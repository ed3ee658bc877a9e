#!/usr/bin/env python3
"""VideoRetrieval.py - is this clip a copy of something in the library, and of which part?

    python code/VideoRetrieval.py CLIP... [--others] [--threshold T] [--json] [--report out.html]
    python code/VideoRetrieval.py --library [--json] [--report out.html]

Prints per clip whether it is a copy and the matching library videos, best first, with the
aligned segments (query and library times) and the number of aligned frames; --json prints
[{"query", "is_copy", "library_video_id", "matches": [{"video_id", "video_path", "score",
"query_start", "query_end", "video_start", "video_end", "frames"}]}]; --report writes an HTML
page with the aligned frame pairs side by side. A clip whose bytes are a library video is that
video ("same file", library_video_id); with --others it is compared with the other library
videos instead (near-duplicates within the library: re-encodes, trims, excerpts); --library does
that for every library video (from the path it was ingested from) and lists each near-duplicate
pair once (--json: every video's answer).
A clip that cannot be read gets one error line and exit code 1; the other clips are still answered.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils import cli, report  # noqa: E402
from utils.catalogue import READY, open_catalogue  # noqa: E402
from utils.embedder import Embedder  # noqa: E402
from utils.errors import InputError  # noqa: E402
from utils.retrieval import (INSET, MIRROR, CopyAnswer, CopyDetector, DuplicatePair, duplicate_pairs,  # noqa: E402
                             verification_pairs)
from utils.vectorstore import VectorStore  # noqa: E402

REPORT_PAIRS = 8  # aligned frame pairs shown per match
PAIR = '<div style="display:flex;gap:4px;padding:4px;border:1px solid #eee;border-radius:4px">{}{}</div>'
VIEW_NOTE = {MIRROR: " (mirrored view)", INSET: " (inset of the clip frame)"}


def main(args, cfg) -> int:
    if not args.clips and not args.library:
        raise InputError("nothing to check: give video clips, or --library to check every library video")
    answers: list[CopyAnswer] = []
    failed = 0
    others = args.others or args.library
    embedder = Embedder.from_config(cfg)
    with open_catalogue(cfg) as cat, VectorStore(cfg) as store:
        detector = CopyDetector(cfg, cat, store, embedder)
        clips = list(args.clips) + ([v.path for v in cat.videos(READY)] if args.library else [])
        bar = cli.progress(args, clips, unit="clip", desc="clips")
        for clip in bar:
            try:
                answers.append(detector.detect(clip, args.threshold, keep_frames=bool(args.report), others=others))
            except InputError as exc:
                cli.error_line(bar, str(exc))
                failed += 1
        if args.report:
            try:
                write_report(args.report, cfg, cat, answers)
                print(f"report written to {args.report}", file=sys.stderr)
            except InputError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failed += 1
    if args.json:
        cli.print_json([a.as_dict() for a in answers])
    elif args.library:
        print_pairs(duplicate_pairs(answers), len(answers))
    else:
        for a in answers:
            itself = f" (library video {a.library_video_id})" if others and a.library_video_id is not None else ""
            print(f"\n{a.query}{itself}: {'COPY' if a.is_copy else 'not a copy'}")
            if a.matches:
                cli.print_table([(i + 1, m.video_id, f"{m.score:.3f}",
                                  report.fmt_span(m.query_start, m.query_end),
                                  report.fmt_span(m.video_start, m.video_end),
                                  "same file" if m.exact else m.frames, Path(m.video_path).name)
                                 for i, m in enumerate(a.matches)],
                                ["#", "video_id", "score", "in clip", "in video", "frames", "video"])
    return 1 if failed else 0


def print_pairs(pairs: list[DuplicatePair], checked: int) -> None:
    """--library's table: each pair of near-duplicate library videos once, best first, and a count."""
    if pairs:
        cli.print_table([(i + 1, p.a, Path(p.a_path).name, report.fmt_span(p.a_start, p.a_end), p.b,
                          Path(p.b_path).name, report.fmt_span(p.b_start, p.b_end), f"{p.score:.3f}")
                         for i, p in enumerate(pairs)],
                        ["#", "video_id", "video", "part", "video_id", "video", "part", "score"])
    videos = len({v for p in pairs for v in (p.a, p.b)})
    print(f"\n{len(pairs)} near-duplicate pair{'s' * (len(pairs) != 1)} among {videos} of the {checked} "
          "library videos checked")


def write_report(path: str, cfg, cat, answers: list[CopyAnswer]) -> None:
    """One block per clip, then one per match: its aligned (clip frame, library keyframe) pairs side by side."""
    rows = []
    for a in answers:
        first = next((f for f in a.frames if not f.flat), a.frames[0]) if a.frames else None
        verdict = "COPY" if a.is_copy else "not a copy"
        rows.append(report.row([report.figure(report.thumbnail_uri(first.rgb() if first else None),
                                              [a.query, verdict], "q")],
                               "" if a.matches else "no library video matches"))
        for m in a.matches:
            title = [Path(m.video_path).name, f"score {m.score:.3f}",
                     f"clip {report.fmt_span(m.query_start, m.query_end)}",
                     f"video {report.fmt_span(m.video_start, m.video_end)}"]
            if m.exact:
                kfs = cat.video_keyframes(m.video_id)[:1]
                uri = report.image_file_uri(cfg.data_path / kfs[0].image_path) if kfs else ""
                rows.append(report.row([report.figure(uri, title + ["the same file (content hash)"], "q")]))
                continue
            pairs = verification_pairs(m.pairs, REPORT_PAIRS)
            kfs = cat.keyframes_by_id([p.keyframe_id for p in pairs])
            cells = []
            for p in pairs:
                kf = kfs.get(p.keyframe_id)
                uri = report.image_file_uri(cfg.data_path / kf.image_path) if kf else ""
                similarity = f"similarity {p.score:.3f}" + VIEW_NOTE.get(min(p.view, INSET), "")
                shown = a.frames[p.q].view(p.view) if p.view >= INSET else a.frames[p.q].rgb()  # an inset: what matched
                cells.append(PAIR.format(
                    report.figure(report.thumbnail_uri(shown), [f"clip {report.fmt_time(p.query_time)}"]),
                    report.figure(uri, [f"video {report.fmt_time(p.video_time)}", similarity])))
            best = max(pairs, key=lambda p: p.score)
            kf = kfs.get(best.keyframe_id)
            head = report.figure(report.image_file_uri(cfg.data_path / kf.image_path) if kf else "",
                                 title + [f"{m.frames} aligned frames"], "q")
            rows.append(report.row([head, *cells]))
    report.write(path, report.page("Picture4Video copy detection", rows))


if __name__ == "__main__":
    p = cli.parser(__doc__.splitlines()[1])
    p.add_argument("clips", nargs="*", help="query video clips")
    p.add_argument("--threshold", type=float, help="minimum copy score (default: retrieval.threshold)")
    p.add_argument("--report", help="write an HTML page with the aligned frame pairs here")
    p.add_argument("--others", action="store_true",
                   help="a clip that is itself a library video: compare it with the other library videos")
    p.add_argument("--library", action="store_true",
                   help="check every library video against the others: the pairs of near-duplicates within the "
                        "library")
    sys.exit(cli.run(p, main))
