#!/usr/bin/env python3
"""Similarity.py - how similar are two frames or images?

    python code/Similarity.py A B [--json]

A and B are image files, video frames written VIDEO@SECONDS, or keyframe ids written kf:ID.
Prints the cosine similarity of their embeddings (after cutting flat borders, as Search does) and
whether that is the same scene by search.same_threshold. --json: {"a", "b", "similarity", "same"}.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils import cli  # noqa: E402
from utils.catalogue import open_catalogue  # noqa: E402
from utils.embedder import Embedder  # noqa: E402
from utils.similarity import load_operand, similarity  # noqa: E402


def main(args, cfg) -> int:
    with open_catalogue(cfg) as cat:
        a, b = load_operand(cfg, cat, args.a), load_operand(cfg, cat, args.b)
    sim = similarity(Embedder.from_config(cfg), a, b)
    same = sim >= cfg.search.same_threshold
    if args.json:
        cli.print_json({"a": args.a, "b": args.b, "similarity": round(sim, 4), "same": same})
    else:
        print(f"similarity {sim:.4f}: {'same scene' if same else 'different'} "
              f"(threshold {cfg.search.same_threshold})")
    return 0


if __name__ == "__main__":
    p = cli.parser(__doc__.splitlines()[1])
    p.add_argument("a", help="image file, VIDEO@SECONDS or kf:KEYFRAME_ID")
    p.add_argument("b", help="image file, VIDEO@SECONDS or kf:KEYFRAME_ID")
    sys.exit(cli.run(p, main))
