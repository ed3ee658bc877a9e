#!/usr/bin/env python3
"""Search.py - which video, and which moment, does this picture come from?

    python code/Search.py IMAGE... [--top-k K] [--threshold T] [--json] [--report out.html]

IMAGE is an image file, a folder (every image file under it), or VIDEO@SECONDS to ask with the
frame a video shows at that time.

Prints a table per image (video, time, matching span, score, keyframe); --json prints one
document [{"query", "results": [{"video_id", "video_path", "timestamp", "from", "to", "score",
"keyframe_id", "keyframe_path"}]}]; --report writes an HTML contact sheet. An image that cannot
be read gets one error line and exit code 1; the other images are still answered.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils import cli, report  # noqa: E402
from utils.catalogue import open_catalogue  # noqa: E402
from utils.embedder import Embedder  # noqa: E402
from utils.errors import InputError  # noqa: E402
from utils.images import expand_folders  # noqa: E402
from utils.search import Searcher, load_query  # noqa: E402
from utils.vectorstore import VectorStore  # noqa: E402


CHUNK = 16  # images read and searched together: a folder of screenshots never sits in memory whole


def main(args, cfg) -> int:
    answers, thumbs = [], []
    images, errors = expand_folders(args.images)
    failed = len(errors)
    embedder = Embedder.from_config(cfg)
    with open_catalogue(cfg) as cat, VectorStore(cfg) as store, Searcher(cfg, cat, store, embedder) as searcher:
        bar = cli.progress(args, total=len(images), unit="image", desc="search", leave=False)
        for message in errors:
            cli.error_line(bar, message)
        for start in range(0, len(images), CHUNK):
            batch = images[start:start + CHUNK]
            queries = []
            for path in batch:
                try:
                    queries.append((path, load_query(path, cfg)))
                except InputError as exc:
                    cli.error_line(bar, str(exc))
                    failed += 1
            answers += searcher.search(queries, args.top_k, args.threshold)
            thumbs += [report.thumbnail_uri(rgb) for _, rgb in queries] if args.report else []
            bar.update(len(batch))
        bar.close()
    if args.json:
        cli.print_json([a.as_dict() for a in answers])
    else:
        for a in answers:
            print(f"\n{a.query}")
            if not a.results:
                print("  no match (best score under the threshold)")
                continue
            cli.print_table([(i + 1, m.video_id, report.fmt_time(m.timestamp),
                              report.fmt_span(m.from_, m.to), f"{m.score:.3f}",
                              m.keyframe_id, Path(m.video_path).name) for i, m in enumerate(a.results)],
                            ["#", "video_id", "at", "span", "score", "keyframe", "video"])
    if args.report:
        rows = []
        for thumb, a in zip(thumbs, answers):
            cells = [report.figure(thumb, ["query", a.query], "q")]
            cells += [report.figure(report.image_file_uri(m.keyframe_path),
                                    [Path(m.video_path).name, f"at {report.fmt_time(m.timestamp)}",
                                     f"score {m.score:.3f}"]) for m in a.results]
            rows.append(report.row(cells, "" if a.results else "no match"))
        report.write(args.report, report.page("Picture4Video search", rows))
        print(f"report written to {args.report}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    p = cli.parser(__doc__.splitlines()[1])
    p.add_argument("images", nargs="+",
                   help="query image files (screenshots, frames), folders of them, or VIDEO@SECONDS")
    p.add_argument("--top-k", type=cli.count_arg, help="videos per query (default: search.top_k)")
    p.add_argument("--threshold", type=float, help="minimum score (default: search.threshold)")
    p.add_argument("--report", help="write an HTML contact sheet here")
    sys.exit(cli.run(p, main))
