#!/usr/bin/env python3
"""Insert2Milvus.py - embed every keyframe not yet embedded and insert the vectors into Milvus.

    python code/Insert2Milvus.py [--video-id ID] [--rebuild] [--json] [--quiet]

Safe to re-run: vectors are upserted by keyframe id and flagged in the catalogue only after
Milvus accepted them. --rebuild drops the collection and re-embeds the whole catalogue.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils import cli  # noqa: E402
from utils.catalogue import open_catalogue  # noqa: E402
from utils.embed_job import embed_library  # noqa: E402


def main(args, cfg) -> int:
    bar, on_batch = cli.batch_progress(args, "embedded", "kf")
    with open_catalogue(cfg) as cat, bar:
        summary = embed_library(cfg, cat, video_id=args.video_id, rebuild=args.rebuild, on_batch=on_batch)
    if args.json:
        cli.print_json(summary.as_dict())
    else:
        print(summary.describe())
    return 0


if __name__ == "__main__":
    p = cli.parser(__doc__.splitlines()[1])
    p.add_argument("--video-id", type=cli.id_arg, help="only this video's keyframes")
    p.add_argument("--rebuild", action="store_true", help="drop the collection and re-embed everything")
    sys.exit(cli.run(p, main))
