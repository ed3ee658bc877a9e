#!/usr/bin/env python3
"""Check.py - find (and with --repair fix) drift between the catalogue, Milvus and the keyframe files.

    python code/Check.py [--repair] [--json]

Reports, by id: vectors without rows, rows without vectors, vectors not flagged as embedded, files
without rows, rows without files, unfinished ingests and deletes, and a model/dimension mismatch.
Exit code 0 when the library is consistent (after repair, if asked), 1 when drift remains.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils import cli  # noqa: E402
from utils.catalogue import open_catalogue  # noqa: E402
from utils.check import find_drift, repair  # noqa: E402
from utils.embed_job import embed_pending  # noqa: E402
from utils.embedder import Embedder  # noqa: E402
from utils.vectorstore import ModelInfo, VectorStore  # noqa: E402


def main(args, cfg) -> int:
    embedder = Embedder.from_config(cfg)
    model = ModelInfo.of(embedder)
    doc: dict[str, object] = {}
    with open_catalogue(cfg) as cat, VectorStore(cfg) as store:
        drift = find_drift(cfg, cat, store, model)
        doc["found"] = drift.as_dict()
        if args.repair and not drift.clean:
            done = repair(cfg, cat, store, drift)
            if done["keyframes_to_embed"] and store.model() is not None and not drift.model_mismatch:
                done["embedded"] = embed_pending(cfg, cat, store, embedder).embedded
            doc["repaired"] = done
            drift = find_drift(cfg, cat, store, model)
            doc["after"] = drift.as_dict()
    if args.json:
        cli.print_json(doc)
    else:
        rows = [(k, len(v) if isinstance(v, list) else v, ", ".join(map(str, v[:8])) if isinstance(v, list) else "")
                for k, v in doc["found"].items() if k != "clean"]
        cli.print_table(rows, ["drift", "count", "ids (first 8)"])
        if "repaired" in doc:
            print("\nrepaired: " + "; ".join(f"{k}={v}" for k, v in doc["repaired"].items()))
        print("\nconsistent" if drift.clean else "\ndrift remains (run with --repair)")
    return 0 if drift.clean else 1


if __name__ == "__main__":
    p = cli.parser(__doc__.splitlines()[1])
    p.add_argument("--repair", action="store_true", help="fix the drift found")
    sys.exit(cli.run(p, main))
