"""The vector store: keyframe embeddings in Milvus, through pymilvus' MilvusClient.

One code path for every Milvus: a local path is Milvus Lite (embedded, a folder on disk), an
``http://host:port`` URI a standalone or cluster server. The collection is written for people who
open it in Attu: named fields with descriptions, a COSINE index, loaded after insert, and the
embedding model (name, file sha256, dimension) recorded as collection properties so that a library
embedded with one model is never searched with another.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from .config import Config
from .errors import VectorStoreError

if TYPE_CHECKING:
    from .embedder import Embedder

log = logging.getLogger(__name__)

MODEL_PROPS = ("p4v.model", "p4v.model_sha256", "p4v.dim")
_DESCRIPTION = "Picture4Video keyframe embeddings: "
_SCALARS = ["video_id", "timestamp"]


@dataclass(frozen=True)
class ModelInfo:
    """The identity of the vectors in a collection."""

    name: str
    sha256: str
    dim: int

    @classmethod
    def of(cls, embedder: Embedder) -> ModelInfo:
        """The identity of the vectors ``embedder`` makes."""
        return cls(embedder.name, embedder.sha256, embedder.dim)

    def props(self) -> dict[str, str]:
        return dict(zip(MODEL_PROPS, (self.name, self.sha256, str(self.dim))))


@dataclass(frozen=True)
class Hit:
    id: int
    video_id: int
    timestamp: float
    score: float


def _quiet_milvus_logs() -> None:
    """pymilvus configures its own loggers on import and logs every failed RPC (and Lite a harmless
    ERROR per create_index); our VectorStoreError already says what went wrong, in one line."""
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.decorators", "milvus_lite", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # Milvus Lite 2.5 imports pkg_resources (kept by setuptools<81); its deprecation notice is not the user's business
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)


def _props_from_description(description: str) -> dict[str, str]:
    """The model properties as written into the collection description: Milvus Lite 2.5 drops
    collection properties, so the description (which Attu shows too) carries them as well."""
    if not description.startswith(_DESCRIPTION):
        return {}
    try:
        props = json.loads(description[len(_DESCRIPTION):])
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in props.items()} if isinstance(props, dict) else {}


def _open_lite(path: str) -> Any:
    """MilvusClient on a Milvus Lite file. Lite 2.5 starts its engine as a child process and gives
    it a fixed 0.5 s to create its socket; on a busy machine it can be later than that (seen once
    in a benchmark run): then forget that engine and start it once more."""
    from pymilvus import MilvusClient

    try:
        return MilvusClient(path)
    except Exception as exc:
        if "Fail connecting to server" not in str(exc):
            raise
        try:
            from milvus_lite.server_manager import server_manager_instance
        except ImportError:  # Lite 3.x runs in process: nothing to restart
            raise exc from None
        server_manager_instance.release_server(path)
        time.sleep(0.5)
        return MilvusClient(path)


def _of_videos(video_ids: Iterable[int], op: str = "in") -> str:
    """A Milvus filter on the video_id field: ``video_id in [3, 7]`` (``op``: ``in`` or ``not in``);
    the ids are made ints, so nothing but numbers reaches the expression."""
    return f"video_id {op} [{', '.join(str(int(v)) for v in video_ids)}]"


class VectorStore:
    """The keyframe collection of one Milvus (Lite or server)."""

    def __init__(self, cfg: Config):
        from pymilvus import MilvusClient

        _quiet_milvus_logs()
        self._loaded = False
        self.cfg = cfg.milvus
        self.uri = cfg.milvus_uri
        self.name = self.cfg.collection
        self.lite = "://" not in self.uri
        self.index_type = self.cfg.index_type
        if self.index_type == "auto":  # Lite 2.5 builds only FLAT/IVF_FLAT, and its IVF ignores nprobe
            self.index_type = "FLAT" if self.lite else "HNSW"
        if self.lite and Path(self.uri).is_dir():  # Lite 2.5 keeps one file; Lite 3.x made a folder
            raise VectorStoreError(
                f"{self.uri} is a Milvus Lite 3.x database (a folder); this install runs Milvus Lite 2.5: "
                "move that folder away and run Insert2Milvus.py to embed the library again")
        try:
            if self.lite:
                cfg.data_path.mkdir(parents=True, exist_ok=True)
                self.client = _open_lite(self.uri)
            else:
                self.client = MilvusClient(uri=self.uri, token=self.cfg.token, timeout=10)
        except Exception as exc:  # pymilvus raises many unrelated types for one cause: cannot connect
            raise VectorStoreError(self._explain(exc)) from exc

    def _explain(self, exc: BaseException) -> str:
        text = str(exc)
        if self.lite and ("lock" in text.lower() or "Open local milvus failed" in text):
            return (f"Milvus Lite database {self.uri} is open in another process (Lite allows one at a time); "
                    "wait for it to finish or use a Milvus server")
        return f"cannot use Milvus at {self.uri}: {text.splitlines()[0] if text else type(exc).__name__}"

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VectorStoreError:
            raise
        except Exception as exc:
            raise VectorStoreError(self._explain(exc)) from exc

    # -- collection ---------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self._call(self.client.has_collection, self.name))

    def model(self) -> ModelInfo | None:
        """The model recorded with the collection, or None when there is no collection."""
        if not self.exists():
            return None
        desc = self._call(self.client.describe_collection, self.name)
        props = desc.get("properties") or _props_from_description(desc.get("description") or "")
        if not all(k in props for k in MODEL_PROPS):
            raise VectorStoreError(f"collection '{self.name}' at {self.uri} was not made by Picture4Video "
                                   "(no model properties); choose another milvus.collection")
        return ModelInfo(props[MODEL_PROPS[0]], props[MODEL_PROPS[1]], int(props[MODEL_PROPS[2]]))

    def ensure(self, model: ModelInfo) -> None:
        """Create the collection for ``model`` if missing; refuse one made with another model."""
        have = self.model()
        if have is None:
            self._create(model)
        else:
            self.check(model, have)

    def check(self, model: ModelInfo, have: ModelInfo | None = None) -> None:
        """Raise unless the collection exists and holds ``model``'s vectors."""
        have = have or self.model()
        if have is None:
            raise VectorStoreError(f"the library is empty: no collection '{self.name}' at {self.uri} "
                                   "(run Create.py and Insert2Milvus.py first)")
        if have != model:
            raise VectorStoreError(
                f"collection '{self.name}' holds {have.dim}-d vectors of {have.name} ({have.sha256[:12]}), "
                f"but the configured model is {model.name} ({model.sha256[:12]}, {model.dim}-d); "
                "use the same model or re-embed with Insert2Milvus.py --rebuild")

    def _create(self, model: ModelInfo) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False,
            description=f"{_DESCRIPTION}{json.dumps(model.props())}")
        schema.add_field("id", DataType.INT64, is_primary=True, description="keyframe id (catalogue keyframes.id)")
        schema.add_field("video_id", DataType.INT64, description="video id (catalogue videos.id)")
        schema.add_field("timestamp", DataType.FLOAT, description="keyframe time in the video, seconds")
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=model.dim,
                         description=f"L2-normalised {model.name} image embedding")
        index = self.client.prepare_index_params()
        index.add_index(field_name="embedding", index_name="embedding", index_type=self.index_type,
                        metric_type=self.cfg.metric_type, params=self._build_params())
        self._call(self.client.create_collection, self.name, schema=schema, properties=model.props())
        # sync=False: the index of an empty collection has nothing to build, yet pymilvus would poll its
        # state every 0.5 s (one poll, 0.5 s, on every new collection's critical path)
        self._call(self.client.create_index, self.name, index, sync=False)
        self._call(self.client.load_collection, self.name)

    def _build_params(self) -> dict[str, Any]:
        if self.index_type.startswith("HNSW"):
            built = {"M": self.cfg.hnsw_m, "efConstruction": self.cfg.hnsw_ef_construction}
        elif self.index_type.startswith("IVF"):
            built = {"nlist": 1024}
        else:
            built = {}
        return {"params": built} if self.lite else built  # Lite drops build params unless nested

    def drop(self) -> None:
        if self.exists():
            self._call(self.client.drop_collection, self.name)

    # -- data ---------------------------------------------------------------------------------
    def upsert(self, ids: Sequence[int], video_ids: Sequence[int], timestamps: Sequence[float],
               vectors: np.ndarray) -> None:
        """Insert or replace vectors by keyframe id: re-running an interrupted batch never duplicates."""
        rows = [{"id": int(i), "video_id": int(v), "timestamp": float(t), "embedding": vec}
                for i, v, t, vec in zip(ids, video_ids, timestamps, vectors.astype(np.float32).tolist())]
        for start in range(0, len(rows), self.cfg.insert_batch):
            self._call(self.client.upsert, self.name, rows[start:start + self.cfg.insert_batch])

    def flush(self) -> None:
        """Seal what was inserted so searches use the index (Lite brute-forces unflushed rows)."""
        self._call(self.client.flush, self.name)

    def load(self) -> None:
        self._call(self.client.load_collection, self.name)
        self._loaded = True

    def _ensure_loaded(self) -> None:
        """A reopened collection starts released (Lite always): load it once per process."""
        if not self._loaded:
            self.load()

    def search(self, vectors: np.ndarray, limit: int, video_ids: Iterable[int] | None = None,
               exclude_video_ids: Iterable[int] = ()) -> list[list[Hit]]:
        """Nearest keyframes for each query vector, best first; ``score`` is cosine similarity. Only of
        ``video_ids`` when given; never of ``exclude_video_ids`` (filtered in Milvus, so the ``limit``
        nearest are all of other videos)."""
        excluded = list(exclude_video_ids)
        flt = " and ".join(([] if video_ids is None else [_of_videos(video_ids)])
                           + ([_of_videos(excluded, "not in")] if excluded else []))
        params = {"metric_type": self.cfg.metric_type, "params": {"ef": max(self.cfg.search_ef, limit), "nprobe": 32}}
        self._ensure_loaded()
        res = self._call(self.client.search, self.name, data=vectors.astype(np.float32).tolist(),
                         anns_field="embedding", limit=limit, filter=flt, search_params=params,
                         output_fields=_SCALARS)
        return [[Hit(int(h["id"]), int(h["entity"]["video_id"]), float(h["entity"]["timestamp"]),
                     float(h["distance"])) for h in hits] for hits in res]

    def ids(self, video_ids: Iterable[int] | None = None) -> set[int]:
        """Every primary key in the collection (or of some videos): for drift checks and deletes."""
        if not self.exists():
            return set()
        self._ensure_loaded()
        flt = "id >= 0" if video_ids is None else _of_videos(video_ids)
        it = self._call(self.client.query_iterator, self.name, batch_size=4096, filter=flt, output_fields=["id"])
        out: set[int] = set()
        try:
            while batch := self._call(it.next):
                out.update(int(r["id"]) for r in batch)
        finally:
            it.close()
        return out

    def delete_videos(self, video_ids: Sequence[int]) -> int:
        """Remove every vector of these videos (rows or not: orphans go too); returns how many there were."""
        if not video_ids or not self.exists():
            return 0
        ids = self.ids(video_ids)
        if ids:
            self._call(self.client.delete, self.name, filter=_of_videos(video_ids))
            self.flush()
        return len(ids)

    def delete_ids(self, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), 4096):
            chunk = ", ".join(str(int(i)) for i in ids[start:start + 4096])
            self._call(self.client.delete, self.name, filter=f"id in [{chunk}]")

    def close(self) -> None:
        try:
            self.client.close()
        except Exception as exc:  # closing a dead connection is not worth failing a finished job
            log.debug("closing Milvus client: %s", exc)

    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
