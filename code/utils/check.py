"""Drift between the three places a library lives: the catalogue, Milvus and the keyframe files.

Each stage is written so that a crash leaves a state the next run finishes, but users also delete
files by hand, restore one store from an older backup, or point two configs at one Milvus. Check
finds every kind of disagreement by id, and ``repair`` resolves each in the direction that loses
nothing the files can give back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from .catalogue import DELETING, INGESTING, Catalogue, owner_is_dead
from .config import Config
from .delete import delete_videos
from .storage import keyframe_files, remove_video_dir
from .vectorstore import ModelInfo, VectorStore
from .verify import features_file


@dataclass
class Drift:
    """Ids on one side only; all empty means the library is consistent."""

    vectors_without_rows: list[int] = field(default_factory=list)
    rows_without_vectors: list[int] = field(default_factory=list)
    vectors_not_flagged: list[int] = field(default_factory=list)
    files_without_rows: list[str] = field(default_factory=list)
    rows_without_files: list[int] = field(default_factory=list)
    unfinished_ingests: list[int] = field(default_factory=list)
    unfinished_deletes: list[int] = field(default_factory=list)
    model_mismatch: str = ""

    @property
    def clean(self) -> bool:
        return not any(getattr(self, f) for f in self.__dataclass_fields__)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["clean"] = self.clean
        return out


def find_drift(cfg: Config, cat: Catalogue, store: VectorStore, model: ModelInfo | None) -> Drift:
    """Compare catalogue rows, Milvus ids and files on disk; nothing is changed."""
    drift = Drift()
    have = store.model()
    if model is not None and have is not None and have != model:
        drift.model_mismatch = f"collection holds {have.name} ({have.dim}-d), config uses {model.name} ({model.dim}-d)"
    rows = {}
    for v in cat.videos():
        if v.status == DELETING:
            drift.unfinished_deletes.append(v.id)
        elif v.status == INGESTING and owner_is_dead(v.owner):
            drift.unfinished_ingests.append(v.id)
        for k in cat.video_keyframes(v.id):
            rows[k.id] = (k, v.status)
    vectors = store.ids()
    drift.vectors_without_rows = sorted(vectors - set(rows))
    drift.rows_without_vectors = sorted(i for i, (k, s) in rows.items() if k.embedded and i not in vectors)
    drift.vectors_not_flagged = sorted(i for i, (k, s) in rows.items() if not k.embedded and i in vectors)
    paths = {k.image_path: i for i, (k, _) in rows.items()}
    on_disk = {p for files in keyframe_files(cfg.data_path).values() for p in files}
    drift.files_without_rows = sorted(on_disk - set(paths))
    drift.rows_without_files = sorted(i for p, i in paths.items() if p not in on_disk
                                      and rows[i][1] not in (INGESTING, DELETING))
    return drift


def repair(cfg: Config, cat: Catalogue, store: VectorStore, drift: Drift) -> dict[str, object]:
    """Fix what ``find_drift`` found; returns what was done (videos to re-ingest are listed, not guessed)."""
    done: dict[str, object] = {}
    if drift.model_mismatch:
        done["model_mismatch"] = "not repaired: run Insert2Milvus.py --rebuild to re-embed with the configured model"
    finished = delete_videos(cfg, cat, store, drift.unfinished_deletes) if drift.unfinished_deletes else []
    done["deletes_finished"] = [d.video_id for d in finished]
    for vid in drift.unfinished_ingests:
        store.delete_videos([vid])
        remove_video_dir(cfg.data_path, vid)
        cat.discard_video(vid)
    done["ingests_discarded"] = drift.unfinished_ingests
    if drift.vectors_without_rows:
        store.delete_ids(drift.vectors_without_rows)
    done["orphan_vectors_deleted"] = len(drift.vectors_without_rows)
    cat.mark_embedded(drift.vectors_not_flagged)
    done["vectors_flagged"] = len(drift.vectors_not_flagged)
    cat.mark_embedded(drift.rows_without_vectors, False)
    done["keyframes_to_embed"] = len(drift.rows_without_vectors)
    for rel in drift.files_without_rows:
        (cfg.data_path / rel).unlink(missing_ok=True)
        features_file(cfg.data_path / rel).unlink(missing_ok=True)
    done["orphan_files_deleted"] = len(drift.files_without_rows)
    broken = {k.video_id for k in cat.keyframes_by_id(drift.rows_without_files).values()}
    reingest = delete_videos(cfg, cat, store, sorted(broken)) if broken else []
    done["videos_to_reingest"] = [d.path for d in reingest]
    if drift.vectors_without_rows or drift.rows_without_vectors:
        store.flush()
    return done
