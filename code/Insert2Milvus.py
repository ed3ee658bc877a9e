#!/usr/bin/env python3
"""Insert2Milvus.py - embed every keyframe not yet embedded and insert the vectors into Milvus.

    python code/Insert2Milvus.py [--video-id ID] [--rebuild] [--features] [--json] [--quiet]

Safe to re-run: vectors are upserted by keyframe id and flagged in the catalogue only after
Milvus accepted them. --rebuild drops the collection and re-embeds the whole catalogue.
--features then stores Search's ORB features beside every keyframe image lacking them (what
keyframes.store_features does while embedding), for a library embedded before it was turned on.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils import cli  # noqa: E402
from utils.catalogue import open_catalogue  # noqa: E402
from utils.embed_job import embed_library, store_missing_features  # noqa: E402


def main(args, cfg) -> int:
    with open_catalogue(cfg) as cat:
        bar, on_batch = cli.batch_progress(args, "embedded", "kf")
        with bar:
            summary = embed_library(cfg, cat, video_id=args.video_id, rebuild=args.rebuild, on_batch=on_batch)
        doc, lines = summary.as_dict(), [summary.describe()]
        if args.features:
            bar, on_batch = cli.batch_progress(args, "features", "kf")
            with bar:
                features = store_missing_features(cfg, cat, video_id=args.video_id, on_batch=on_batch)
            doc |= features.as_dict()
            lines.append(features.describe())
    if args.json:
        cli.print_json(doc)
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    p = cli.parser(__doc__.splitlines()[1])
    p.add_argument("--video-id", type=cli.id_arg, help="only this video's keyframes")
    p.add_argument("--rebuild", action="store_true", help="drop the collection and re-embed everything")
    p.add_argument("--features", action="store_true",
                   help="also store Search's ORB features beside every keyframe image lacking them (no re-embedding)")
    sys.exit(cli.run(p, main))
