#!/usr/bin/env python3
"""Create.py - ingest videos: keyframes to disk, videos and keyframes into the catalogue.

    python code/Create.py VIDEO_OR_FOLDER... [--embed] [--shard I/N] [--json] [--quiet]

--embed also embeds the keyframes into Milvus, while decoding (what Insert2Milvus does afterwards).
--shard I/N ingests only every N-th file starting at I (0-based): N workers on many hosts sharing
one MySQL split a library without collisions.

Re-running is safe: content already in the library is reported and skipped, an interrupted
ingest is finished. Exit code 1 when any file failed (the others are still ingested).
"""

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils import cli  # noqa: E402
from utils.catalogue import open_catalogue  # noqa: E402
from utils.embed_job import EmbedSink, embed_pending  # noqa: E402
from utils.embedder import Embedder  # noqa: E402
from utils.ingest import FileResult, ingest  # noqa: E402
from utils.vectorstore import VectorStore  # noqa: E402


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError("need 0 <= I < N")
    return i, n


def main(args, cfg) -> int:
    with open_catalogue(cfg) as cat, ExitStack() as stack:
        sink = None
        if args.embed:  # embed while decoding: the model runs in a thread beside the decoder
            embedder = Embedder.from_config(cfg)
            sink = EmbedSink(cfg, cat, embedder, lambda: VectorStore(cfg))
            stack.callback(sink.close_store)
        frames = cli.progress(args, unit="frame", desc="decoded", position=1, leave=False)

        def on_result(r: FileResult) -> None:
            if r.status != "added":
                (frames.write if not frames.disable else lambda m: print(m, file=sys.stderr))(
                    f"{'error' if r.status == 'failed' else 'skip'}: {r.message}")

        summary = ingest(
            cfg, cat, args.paths, shard_of=args.shard,
            progress=lambda files, n: cli.progress(args, files, total=n, unit="file", desc="videos", position=0),
            on_frames=frames.update, on_result=on_result, sink=sink,
        )
        frames.close()
        embedded = None
        if sink is not None:
            closing = time.perf_counter()
            sink.close()  # the last videos' vectors are still being embedded: part of the embedding's time
            closed_s = time.perf_counter() - closing
            bar, on_batch = cli.batch_progress(args, "embedded", "kf")
            with bar:  # keyframes ingested earlier without --embed, or left by an interrupted run
                embedded = embed_pending(cfg, cat, sink.ready(), embedder, on_batch=on_batch)
            embedded.embedded += sink.embedded
            embedded.already -= sink.embedded
            embedded.wall_s = summary.wall_s + closed_s + embedded.wall_s
    s = summary.as_dict()
    if embedded is not None:
        s["embedding"] = embedded.as_dict()
    if args.json:
        cli.print_json(s)
    else:
        rows = [(r.video_id or "-", r.status, r.keyframes, f"{r.duration:.1f}", Path(r.path).name)
                for r in summary.results]
        cli.print_table(rows, ["video_id", "status", "keyframes", "seconds", "file"])
        print(f"\nadded {s['added']}, skipped {s['skipped']}, failed {s['failed']}; {s['keyframes']} keyframes; "
              f"{s['wall_seconds']:.1f} s wall, {s['speed_x_realtime']}x real time, "
              f"{s['keyframes_per_second']} keyframes/s")
        if embedded is not None:
            print(embedded.describe())
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    p = cli.parser(__doc__.splitlines()[1])
    p.add_argument("paths", nargs="+", help="video files and/or folders (searched recursively)")
    p.add_argument("--embed", action="store_true", help="also embed the keyframes into Milvus (Insert2Milvus)")
    p.add_argument("--shard", type=parse_shard, metavar="I/N", help="ingest only shard I of N (0-based)")
    sys.exit(cli.run(p, main))
