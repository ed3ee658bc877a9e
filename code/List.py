#!/usr/bin/env python3
"""List.py - what the library holds: its videos, their ids, lengths, keyframes and what Milvus has.

    python code/List.py [VIDEO_ID...] [--match TEXT]... [--json]

With no arguments, every video; VIDEO_IDs and --match (part of a file path, any case) pick some.
Reads the catalogue only, no Milvus. A video whose ingest or delete was interrupted is listed with
that status (re-running Create.py or Delete.py finishes it; Check.py finds any drift). An id that no
video has gets one error line and exit code 1; the others are still listed.
--json prints [{"video_id", "path", "status", "duration", "keyframes", "embedded", "container",
"codec", "width", "height", "fps", "size_bytes", "content_hash", "added_utc"}].
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils import cli, report  # noqa: E402
from utils.catalogue import open_catalogue  # noqa: E402
from utils.library import list_videos  # noqa: E402


def main(args, cfg) -> int:
    with open_catalogue(cfg) as cat:
        listed, unknown = list_videos(cat, args.video_ids, args.match or [])
    for vid in unknown:
        print(f"error: no library video has id {vid}", file=sys.stderr)
    if args.json:
        cli.print_json([x.as_dict() for x in listed])
    elif listed:
        cli.print_table([(x.video.id, Path(x.video.path).name, report.fmt_time(x.video.duration),
                          x.video.keyframe_count, x.embedded, x.video.codec,
                          f"{x.video.width}x{x.video.height}", x.video.fps, x.video.size_bytes / 1e6,
                          x.video.status, x.video.created_at) for x in listed],
                        ["video_id", "video", "length", "keyframes", "in Milvus", "codec", "size", "fps", "MB",
                         "status", "added (UTC)"], floatfmt=("", "", "", "", "", "", "", ".2f", ".1f"))
        print(f"\n{len(listed)} video{'s' * (len(listed) != 1)}, "
              f"{report.fmt_time(sum(x.video.duration for x in listed))} of video, "
              f"{sum(x.video.keyframe_count for x in listed)} keyframes, {sum(x.embedded for x in listed)} in Milvus")
    else:
        print("no video matches" if args.video_ids or args.match
              else "the library is empty (add videos with Create.py)")
    return 1 if unknown else 0


if __name__ == "__main__":
    p = cli.parser(__doc__.splitlines()[1])
    p.add_argument("video_ids", nargs="*", type=cli.id_arg, help="ids of the videos to list (default: all)")
    p.add_argument("--match", action="append", metavar="TEXT",
                   help="also list the videos whose file path contains TEXT (any case); repeatable")
    sys.exit(cli.run(p, main))
