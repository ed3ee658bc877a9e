"""Settings: one ``config.yaml`` for everything, environment variables on top.

Why dataclasses: a typo in config.yaml (``max_gpa``) must fail loudly, not be ignored, and code
reading ``cfg.keyframes.max_gap`` gets a typed value.

Lookup order, later wins:
1. the defaults below;
2. the YAML file named by ``$P4V_CONFIG``, else ``config.yaml`` at the project root;
3. environment variables ``P4V_<SECTION>__<KEY>`` (double underscore between levels), values
   parsed as YAML scalars, e.g. ``P4V_DATA_DIR=/srv/p4v``, ``P4V_CATALOGUE__BACKEND=mysql``,
   ``P4V_MILVUS__URI=http://h:19530``.

Secrets never live in the file: the MySQL password comes from ``$P4V_MYSQL_PASSWORD`` and the
Milvus token from ``$P4V_MILVUS_TOKEN`` (names configurable).
Relative paths are resolved against the directory of the config file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "P4V_"
log = logging.getLogger(__name__)


@dataclass
class MySQLConfig:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "p4v"
    database: str = "picture4video"
    unix_socket: str | None = None
    password_env: str = "P4V_MYSQL_PASSWORD"
    connect_timeout: int = 5
    password: str = field(default="", repr=False)  # filled from the environment by load_config only


@dataclass
class CatalogueConfig:
    backend: str = "sqlite"  # sqlite | mysql
    sqlite_path: str = "catalogue.sqlite3"  # relative to data_dir
    mysql: MySQLConfig = field(default_factory=MySQLConfig)
    stale_after_s: float = 600.0  # an 'ingesting' row untouched this long may be taken over


@dataclass
class KeyframeConfig:
    mode: str = "full"  # full: I-frames + scene cuts + max-gap coverage; iframes: I-frames only (fast)
    max_gap: float = 1.0  # seconds; no two kept frames further apart (full mode)
    scene_threshold: float = 0.12  # mean abs luma change (0..1) between frames that marks a cut
    change_threshold: float = 0.025  # ...and against the last kept frame that makes a new one worth keeping
    min_gap: float = 0.5  # seconds; frames kept for gradual change are at least this far apart
    dedup_distance: int = 6  # dHash bits; closer neighbours within max_gap are dropped
    image_max_side: int = 480  # long side of stored keyframe JPEGs
    jpeg_quality: int = 90
    store_features: bool = False  # keep each keyframe's ORB features beside its image when it is embedded
    decode_threads: int = 0  # 0 = let FFmpeg choose
    skip_nonref: bool = True  # full mode: frames no other frame references (most B-frames) are not decoded
    skip_loop_filter: bool = True  # frames other than the codec's keyframes are decoded without its loop (deblocking) filter
    min_decoded_share: float = 0.9  # below this share of the declared duration a file is truncated


@dataclass
class ModelConfig:
    cpu_path: str = "code/model/efficientnet_lite0_int8.onnx"
    gpu_path: str = "code/model/efficientnet_lite0_fp32.onnx"
    device: str = "auto"  # auto | cpu | cuda
    variant: str = "auto"  # auto (int8 on CPU, fp32 on GPU) | int8 | fp32
    batch_size: int = 32
    threads: int = 0  # onnxruntime intra-op threads, 0 = all cores
    preprocess_threads: int = 0  # threads resizing the next batch while the model runs; 0 = by device
    projection: str = "code/model/efficientnet_lite0_lda256.npz"  # 256-d projection after the model; "" = raw 1280-d


@dataclass
class MilvusConfig:
    uri: str = "milvus.db"  # a local path (relative to data_dir) = Milvus Lite; http://host:port = server
    collection: str = "p4v_keyframes"
    token_env: str = "P4V_MILVUS_TOKEN"
    user_env: str = "P4V_MILVUS_USER"
    password_env: str = "P4V_MILVUS_PASSWORD"
    index_type: str = "auto"  # auto: FLAT on Milvus Lite (exact), HNSW on a server
    metric_type: str = "COSINE"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    search_ef: int = 64
    insert_batch: int = 512
    token: str = field(default="", repr=False)  # filled from the environment by load_config only


@dataclass
class SearchConfig:
    top_k: int = 5
    threshold: float = 0.72  # cosine below this = no match
    candidates: int = 50  # keyframe hits fetched per query before grouping by video
    group_gap: float = 3.0  # seconds: hits of one video closer than this form one scene span
    verify: bool = True  # query windows + ORB/RANSAC verification of the best candidates
    verify_candidates: int = 10  # keyframes verified per query (besides the leading video's own)
    verify_min_inliers: int = 15  # geometric inliers that confirm a keyframe
    refine: bool = False  # decode around the best answer's keyframe for its exact frame (slower)
    max_image_pixels: int = 50_000_000
    max_image_bytes: int = 50_000_000
    same_threshold: float = 0.8  # Similarity.py: at or above = same scene


@dataclass
class RetrievalConfig:
    threshold: float = 0.45  # copy score at or above = is_copy
    per_frame_k: int = 20  # library keyframes fetched per query frame view
    offset_tolerance: float = 1.0  # seconds; hits whose time offsets agree this well vote together
    min_frames: int = 3  # aligned query frames a match needs (fewer only when the clip has fewer)
    query_max_gap: float = 0.5  # seconds; query keyframes are sampled denser than the library's
    min_similarity: float = 0.45  # keyframe hits under this cosine do not vote
    max_gap: float = 3.0  # seconds of query time without an aligned frame that end a segment
    max_peaks: int = 3  # time offsets examined per candidate video
    max_matches: int = 5  # matches reported per clip
    mirror: bool = True  # also search each query frame flipped left-right
    insets: bool = True  # also search any inset picture of a query frame (picture-in-picture, reaction videos)
    verify: bool = True  # check the aligned frames region by region (same scene, other content)
    verify_pairs: int = 8  # aligned frame pairs checked per match
    min_aligned_pairs: int = 2  # of those, how many ORB + RANSAC must align (fewer only when there are fewer); 0 = off
    verify_min_inliers: int = 15  # geometric inliers that make a pair aligned


@dataclass
class Config:
    data_dir: str = "data"
    catalogue: CatalogueConfig = field(default_factory=CatalogueConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    milvus: MilvusConfig = field(default_factory=MilvusConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    base_dir: Path = field(default=PROJECT_ROOT, repr=False)

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data_dir)

    def resolve(self, path: str) -> Path:
        """A config path as an absolute path: relative ones hang off the config file's folder."""
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def sqlite_path(self) -> Path:
        p = Path(self.catalogue.sqlite_path)
        return p if p.is_absolute() else self.data_path / p

    @property
    def milvus_uri(self) -> str:
        """Server URIs pass through; a Lite database path is made absolute under data_dir."""
        uri = self.milvus.uri
        if "://" in uri:
            return uri
        p = Path(os.path.expanduser(uri))
        return str(p if p.is_absolute() else self.data_path / p)


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and coercing scalar types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "base_dir"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown setting '{name}' (known: {', '.join(sorted(fields))})")
        default = fields[key].default_factory() if fields[key].default_factory is not dataclasses.MISSING else fields[key].default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value or {}, name)
        else:
            kwargs[key] = _coerce(value, default, name)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, name: str) -> Any:
    if value is None or default is None:
        return value
    target = type(default)
    if target is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"setting '{name}' must be true or false, got {value!r}")
    if target in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting '{name}' must be a number, got {value!r}")
        return target(value)
    if target is str:
        return str(value)
    return value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``P4V_A__B=v`` -> ``{"a": {"b": v}}`` for names whose first part is a setting section or key.

    Other ``P4V_`` names (P4V_CONFIG, the secrets, P4V_TEST_*) are not settings and are left alone.
    """
    top = {f.name for f in dataclasses.fields(Config)} - {"base_dir"}
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX):].lower().split("__")
        if parts[0] not in top:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {key}: cannot parse {raw!r}: {exc}") from exc
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


_SECRET_KEYS = {"password", "token", "passwd", "secret"}


def _drop_secrets(data: dict[str, Any], where: str = "") -> None:
    """Remove secrets written into config.yaml, with a warning: they are read from the environment only."""
    for k in list(data):
        v = data[k]
        if isinstance(v, dict):
            _drop_secrets(v, f"{where}{k}.")
        elif str(k).lower() in _SECRET_KEYS:
            del data[k]
            log.warning(
                "config.yaml holds a secret in '%s%s': it is ignored; put it in an environment variable "
                "(P4V_MYSQL_PASSWORD, P4V_MILVUS_TOKEN) instead", where, k)


def _read_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """One config file as a mapping; ``extends: other.yaml`` (relative to it) is read first and
    overlaid, so a profile names only what it changes."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config {path} is not valid YAML{at}: {problem}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config {path}: top level must be a mapping")
    _drop_secrets(loaded)
    base = loaded.pop("extends", None)
    if base is None:
        return loaded
    if depth > 4:
        raise ConfigError(f"config {path}: 'extends' nests too deep")
    return _merge(_read_yaml((path.parent / str(base)).resolve(), depth + 1), loaded)


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the configuration: defaults, then the YAML file, then ``P4V_*__*`` environment overrides."""
    env = os.environ if environ is None else environ
    named = "--config" if path is not None else "P4V_CONFIG" if env.get("P4V_CONFIG") else None
    if path is None:
        path = env.get("P4V_CONFIG") or (PROJECT_ROOT / "config.yaml")
    cfg_path = Path(path).expanduser().resolve()
    data: dict[str, Any] = {}
    if cfg_path.exists():
        data = _read_yaml(cfg_path)
    elif named:  # only the default config.yaml may be absent (then every setting is its default)
        raise ConfigError(f"config file not found: {cfg_path} (from {named})")
    data = _merge(data, _env_overrides(env))
    cfg = _build(Config, data, "")
    cfg.base_dir = cfg_path.parent
    _read_secrets(cfg, env)
    _validate(cfg)
    return cfg


def _read_secrets(cfg: Config, env: Mapping[str, str]) -> None:
    """Secrets come from the environment variables the config names, never from the file."""
    cfg.catalogue.mysql.password = env.get(cfg.catalogue.mysql.password_env, "")
    m = cfg.milvus
    user = env.get(m.user_env, "")
    m.token = env.get(m.token_env, "") or (f"{user}:{env.get(m.password_env, '')}" if user else "")


def _validate(cfg: Config) -> None:
    checks = [
        (cfg.catalogue.backend in ("sqlite", "mysql"), "catalogue.backend must be 'sqlite' or 'mysql'"),
        (cfg.keyframes.mode in ("full", "iframes"), "keyframes.mode must be 'full' or 'iframes'"),
        (cfg.keyframes.max_gap > 0, "keyframes.max_gap must be > 0"),
        (16 <= cfg.keyframes.image_max_side <= 8192, "keyframes.image_max_side must be 16..8192"),
        (cfg.model.device in ("auto", "cpu", "cuda"), "model.device must be auto, cpu or cuda"),
        (cfg.model.variant in ("auto", "int8", "fp32"), "model.variant must be auto, int8 or fp32"),
        (cfg.model.batch_size >= 1, "model.batch_size must be >= 1"),
        (cfg.model.preprocess_threads >= 0, "model.preprocess_threads must be >= 0"),
        (cfg.milvus.metric_type in ("COSINE", "IP"), "milvus.metric_type must be COSINE or IP"),
        (cfg.search.top_k >= 1, "search.top_k must be >= 1"),
        *((getattr(cfg.retrieval, n) > 0, f"retrieval.{n} must be > 0")
          for n in ("offset_tolerance", "query_max_gap", "max_gap")),
        *((getattr(cfg.retrieval, n) >= 1, f"retrieval.{n} must be >= 1")
          for n in ("per_frame_k", "min_frames", "max_peaks", "max_matches", "verify_pairs")),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
