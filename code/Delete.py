#!/usr/bin/env python3
"""Delete.py - delete videos from Milvus, the catalogue and disk, completely and idempotently.

    python code/Delete.py VIDEO_ID... [--path P]... [--dry-run] [--json]

Deleting an unknown or already deleted id is reported and harmless. If Milvus is unreachable
half way, the video stays marked 'deleting' (never answered by Search) and re-running finishes it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils import cli  # noqa: E402
from utils.catalogue import open_catalogue  # noqa: E402
from utils.delete import delete_videos, resolve_paths  # noqa: E402
from utils.errors import InputError  # noqa: E402
from utils.vectorstore import VectorStore  # noqa: E402


def main(args, cfg) -> int:
    with open_catalogue(cfg) as cat:
        ids = list(args.video_ids) + resolve_paths(cat, args.path or [])
        if not ids:
            raise InputError("nothing to delete: give video ids and/or --path (no library video has those paths)")
        with VectorStore(cfg) as store:
            results = delete_videos(cfg, cat, store, ids, dry_run=args.dry_run)
    if args.json:
        cli.print_json([r.as_dict() for r in results])
    else:
        cli.print_table([(r.video_id, r.status, r.keyframes, r.vectors, r.files, Path(r.path).name or "-")
                         for r in results], ["video_id", "status", "keyframes", "vectors", "files", "video"])
    return 0


if __name__ == "__main__":
    p = cli.parser(__doc__.splitlines()[1])
    p.add_argument("video_ids", nargs="*", type=cli.id_arg, help="ids of videos to delete (List.py shows them)")
    p.add_argument("--path", action="append", help="also delete the library video at this file path")
    p.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    sys.exit(cli.run(p, main))
