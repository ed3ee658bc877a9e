"""The catalogue: videos and keyframes in SQLite (embedded default) or MySQL/MariaDB (PyMySQL).

Why one class with a small dialect table instead of two implementations: both drivers speak
DB-API 2, so the queries, the transaction rules and the tests are shared; only the DDL types,
the placeholder style and the error classes differ. Every statement is parameterised.

Ingest protocol (what makes it resumable and safe to run twice or concurrently):
- ``claim_video`` inserts the video row with ``status='ingesting'`` and an owner (host:pid);
  ``content_hash`` is UNIQUE, so two workers can never ingest the same content.
- keyframe rows and ``status='ready'`` are written in one transaction by ``finish_video``: a
  video is either complete or not visible as done.
- an ``ingesting`` row whose owner died (same host, pid gone) or went quiet for
  ``stale_after_s`` is taken over by the next run (compare-and-swap on the owner).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .config import Config
from .errors import CatalogueError, InputError

READY, INGESTING, DELETING = "ready", "ingesting", "deleting"
KINDS = ("iframe", "scene", "gap")
MAX_ID = 2**63 - 1  # ids are BIGINT (MySQL) / INTEGER (SQLite): signed 64-bit


def parse_id(text: str) -> int:
    """A video or keyframe id typed by a user; InputError for anything that cannot be one (a larger
    number used to reach the database driver and fail there with a traceback)."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise InputError(f"{text}: not an id (a whole number from 1 to {MAX_ID})")
    return int(text)

_VIDEO_COLS = (
    "id, path, content_hash, size_bytes, container, codec, width, height, fps, duration, "
    "keyframe_count, status, owner, created_at, updated_at"
)
_KF_COLS = "id, video_id, seq, frame_index, pts, timestamp, kind, image_path, embedded"


@dataclass(frozen=True)
class VideoMeta:
    """What ingest learns about a file before its keyframes exist."""

    path: str
    content_hash: str
    size_bytes: int
    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration: float


@dataclass(frozen=True, kw_only=True)
class Video(VideoMeta):
    """A catalogued video: its metadata plus what the catalogue adds."""

    id: int
    keyframe_count: int
    status: str
    owner: str | None
    created_at: Any
    updated_at: Any


@dataclass(frozen=True)
class NewKeyframe:
    seq: int
    frame_index: int
    pts: int
    timestamp: float
    kind: str
    image_path: str


@dataclass(frozen=True, kw_only=True)
class KeyframeRow(NewKeyframe):
    """A catalogued keyframe: the row ingest wrote, with its id (the Milvus primary key)."""

    id: int
    video_id: int
    embedded: bool


@dataclass(frozen=True)
class Claim:
    """Outcome of ``claim_video``: ``state`` is new, resumed, exists or busy."""

    state: str
    video: Video


_DDL = {
    "sqlite": [
        """CREATE TABLE IF NOT EXISTS videos (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL,
            content_hash CHAR(64) NOT NULL UNIQUE,
            size_bytes INTEGER NOT NULL,
            container VARCHAR(64) NOT NULL,
            codec VARCHAR(32) NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            fps REAL NOT NULL,
            duration REAL NOT NULL,
            keyframe_count INTEGER NOT NULL DEFAULT 0,
            status VARCHAR(16) NOT NULL CHECK (status IN ('ingesting', 'ready', 'deleting')),
            owner VARCHAR(128),
            created_at TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS ix_videos_status ON videos (status)",
        """CREATE TABLE IF NOT EXISTS keyframes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            video_id INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            frame_index INTEGER NOT NULL,
            pts INTEGER NOT NULL,
            timestamp REAL NOT NULL,
            kind VARCHAR(8) NOT NULL CHECK (kind IN ('iframe', 'scene', 'gap')),
            image_path VARCHAR(255) NOT NULL,
            embedded BOOLEAN NOT NULL DEFAULT 0,
            UNIQUE (video_id, seq))""",
        "CREATE INDEX IF NOT EXISTS ix_keyframes_embedded ON keyframes (embedded, id)",
        "CREATE INDEX IF NOT EXISTS ix_keyframes_video_time ON keyframes (video_id, timestamp)",
    ],
    "mysql": [
        """CREATE TABLE IF NOT EXISTS videos (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            path VARCHAR(1024) NOT NULL,
            content_hash CHAR(64) CHARACTER SET ascii NOT NULL,
            size_bytes BIGINT NOT NULL,
            container VARCHAR(64) NOT NULL,
            codec VARCHAR(32) NOT NULL,
            width INT NOT NULL,
            height INT NOT NULL,
            fps DOUBLE NOT NULL,
            duration DOUBLE NOT NULL,
            keyframe_count INT NOT NULL DEFAULT 0,
            status ENUM('ingesting', 'ready', 'deleting') NOT NULL,
            owner VARCHAR(128) NULL,
            created_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL,
            UNIQUE KEY ux_videos_hash (content_hash),
            KEY ix_videos_status (status)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
        """CREATE TABLE IF NOT EXISTS keyframes (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            video_id BIGINT NOT NULL,
            seq INT NOT NULL,
            frame_index INT NOT NULL,
            pts BIGINT NOT NULL,
            timestamp DOUBLE NOT NULL,
            kind ENUM('iframe', 'scene', 'gap') NOT NULL,
            image_path VARCHAR(255) NOT NULL,
            embedded BOOLEAN NOT NULL DEFAULT FALSE,
            UNIQUE KEY ux_keyframes_video_seq (video_id, seq),
            KEY ix_keyframes_embedded (embedded, id),
            KEY ix_keyframes_video_time (video_id, timestamp),
            CONSTRAINT fk_keyframes_video FOREIGN KEY (video_id) REFERENCES videos (id) ON DELETE CASCADE
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    ],
}


def _now() -> str:
    """UTC wall time as 'YYYY-MM-DD HH:MM:SS': compares correctly as SQLite text and MySQL DATETIME."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def owner_id() -> str:
    """Who holds an ingest: host and pid, so a dead owner on this host is recognised at once."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()  # our own earlier claim in this process is ours to retake


class Catalogue:
    """Videos and keyframes, the same behaviour on SQLite and MySQL."""

    def __init__(self, connect: Callable[[], Any], dialect: str, errors: tuple[type[BaseException], ...], where: str):
        self._connect = connect
        self.dialect = dialect
        self._errors = errors
        self.where = where
        self._conn = self._guard(connect)
        with self.transaction() as cur:
            for stmt in _DDL[dialect]:
                cur.execute(stmt)

    # -- plumbing ---------------------------------------------------------------------------
    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a driver call, turning driver errors into one clear CatalogueError."""
        try:
            return fn(*args)
        except self._errors as exc:
            raise CatalogueError(f"catalogue {self.where}: {exc}") from exc

    def _reconnect_if_lost(self) -> None:
        """A MySQL server restarted between transactions costs one reconnect, not the whole run."""
        try:
            self._conn.ping(False)
        except self._errors:
            self._conn = self._guard(self._connect)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "mysql" else sql

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One transaction: commit on success, roll back on any error (driver errors become CatalogueError)."""
        if self.dialect == "mysql":
            self._reconnect_if_lost()
        cur = self._guard(self._conn.cursor)
        try:
            yield _Cursor(self, cur)
            self._guard(self._conn.commit)
        except BaseException:
            try:
                self._conn.rollback()
            except self._errors:
                pass
            raise
        finally:
            try:
                cur.close()
            except self._errors:
                pass

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def close(self) -> None:
        try:
            self._conn.close()
        except self._errors:
            pass

    def __enter__(self) -> "Catalogue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- videos -----------------------------------------------------------------------------
    def video(self, video_id: int) -> Video | None:
        rows = self._query(f"SELECT {_VIDEO_COLS} FROM videos WHERE id = ?", (video_id,))
        return _video(rows[0]) if rows else None

    def video_by_hash(self, content_hash: str) -> Video | None:
        rows = self._query(f"SELECT {_VIDEO_COLS} FROM videos WHERE content_hash = ?", (content_hash,))
        return _video(rows[0]) if rows else None

    def videos(self, status: str | None = None) -> list[Video]:
        if status is None:
            rows = self._query(f"SELECT {_VIDEO_COLS} FROM videos ORDER BY id")
        else:
            rows = self._query(f"SELECT {_VIDEO_COLS} FROM videos WHERE status = ? ORDER BY id", (status,))
        return [_video(r) for r in rows]

    def claim_video(self, meta: VideoMeta, owner: str, stale_after_s: float) -> Claim:
        """Reserve ``meta``'s content for ``owner``: insert it, or take over a dead/stale unfinished ingest."""
        now = _now()
        try:
            with self.transaction() as cur:
                cur.execute(
                    "INSERT INTO videos (path, content_hash, size_bytes, container, codec, width, height, fps,"
                    " duration, keyframe_count, status, owner, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
                    (meta.path, meta.content_hash, meta.size_bytes, meta.container, meta.codec, meta.width,
                     meta.height, meta.fps, meta.duration, INGESTING, owner, now, now),
                )
            created = True
        except CatalogueError as exc:
            if not self._is_duplicate(exc):
                raise
            created = False
        existing = self.video_by_hash(meta.content_hash)
        if existing is None:  # deleted between our insert attempt and the read: try once more
            return self.claim_video(meta, owner, stale_after_s)
        if created:
            return Claim("new", existing)
        if existing.status != INGESTING:
            return Claim("exists" if existing.status == READY else "busy", existing)
        stale_before = (datetime.now(timezone.utc) - timedelta(seconds=stale_after_s)).strftime("%Y-%m-%d %H:%M:%S")
        if not (owner_is_dead(existing.owner) or str(existing.updated_at) < stale_before):
            return Claim("busy", existing)
        with self.transaction() as cur:
            cur.execute(
                "UPDATE videos SET owner = ?, path = ?, updated_at = ? WHERE id = ? AND status = ? AND "
                + ("owner IS NULL" if existing.owner is None else "owner = ?"),
                (owner, meta.path, now, existing.id, INGESTING) + (() if existing.owner is None else (existing.owner,)),
            )
            taken = cur.rowcount == 1
        if not taken:
            return Claim("busy", existing)
        return Claim("resumed", self.video(existing.id) or existing)

    def _is_duplicate(self, exc: CatalogueError) -> bool:
        cause = exc.__cause__
        if self.dialect == "sqlite":
            return isinstance(cause, sqlite3.IntegrityError)
        return getattr(cause, "args", (None,))[0] == 1062  # ER_DUP_ENTRY

    def touch(self, video_id: int, owner: str) -> None:
        """Heartbeat for a long ingest, so other workers do not take it over as stale."""
        with self.transaction() as cur:
            cur.execute("UPDATE videos SET updated_at = ? WHERE id = ? AND owner = ?", (_now(), video_id, owner))

    def finish_video(self, video_id: int, owner: str, keyframes: Sequence[NewKeyframe], duration: float) -> list[int]:
        """Write every keyframe row and mark the video ready, atomically; returns the keyframe ids in order."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM keyframes WHERE video_id = ?", (video_id,))
            cur.executemany(
                "INSERT INTO keyframes (video_id, seq, frame_index, pts, timestamp, kind, image_path, embedded)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(video_id, k.seq, k.frame_index, k.pts, k.timestamp, k.kind, k.image_path, False) for k in keyframes],
            )
            cur.execute(
                "UPDATE videos SET status = ?, keyframe_count = ?, duration = ?, owner = NULL, updated_at = ?"
                " WHERE id = ? AND owner = ?",
                (READY, len(keyframes), duration, _now(), video_id, owner),
            )
            if cur.rowcount != 1:
                raise CatalogueError(f"video {video_id} was taken over by another worker; not finishing it here")
            cur.execute("SELECT id FROM keyframes WHERE video_id = ? ORDER BY seq", (video_id,))
            return [int(r[0]) for r in cur.fetchall()]

    def discard_video(self, video_id: int) -> None:
        """Forget a video and its keyframes (rows only; files and vectors are the caller's)."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM keyframes WHERE video_id = ?", (video_id,))
            cur.execute("DELETE FROM videos WHERE id = ?", (video_id,))

    def mark_deleting(self, video_id: int) -> None:
        """First step of a delete: the video disappears from search results before anything is removed."""
        with self.transaction() as cur:
            cur.execute("UPDATE videos SET status = ?, updated_at = ? WHERE id = ?", (DELETING, _now(), video_id))

    # -- keyframes --------------------------------------------------------------------------
    @staticmethod
    def _keyframe_filter(video_id: int | None, embedded: bool | None, after_id: int) -> tuple[str, list[Any]]:
        sql = " FROM keyframes k JOIN videos v ON v.id = k.video_id WHERE v.status = ? AND k.id > ?"
        params: list[Any] = [READY, after_id]
        if video_id is not None:
            sql += " AND k.video_id = ?"
            params.append(video_id)
        if embedded is not None:
            sql += " AND k.embedded = ?"
            params.append(embedded)
        return sql, params

    def keyframes(self, video_id: int | None = None, embedded: bool | None = None,
                  after_id: int = 0, limit: int | None = None) -> list[KeyframeRow]:
        """Keyframes of ready videos, by id: filtered by video and/or embedded flag, paged by ``after_id``."""
        where, params = self._keyframe_filter(video_id, embedded, after_id)
        sql = f"SELECT {', '.join('k.' + c.strip() for c in _KF_COLS.split(','))}{where} ORDER BY k.id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_keyframe(r) for r in self._query(sql, params)]

    def count_keyframes(self, video_id: int | None = None, embedded: bool | None = None) -> int:
        """How many keyframes of ready videos match (same filter as ``keyframes``)."""
        where, params = self._keyframe_filter(video_id, embedded, 0)
        return int(self._query(f"SELECT COUNT(*){where}", params)[0][0])

    def keyframes_by_id(self, ids: Sequence[int]) -> dict[int, KeyframeRow]:
        out: dict[int, KeyframeRow] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            marks = ", ".join("?" * len(chunk))
            for r in self._query(f"SELECT {_KF_COLS} FROM keyframes WHERE id IN ({marks})", chunk):
                out[int(r[0])] = _keyframe(r)
        return out

    def video_keyframes(self, video_id: int) -> list[KeyframeRow]:
        """All keyframe rows of one video whatever its status (for delete, check and repair)."""
        rows = self._query(f"SELECT {_KF_COLS} FROM keyframes WHERE video_id = ? ORDER BY seq", (video_id,))
        return [_keyframe(r) for r in rows]

    def neighbour_times(self, video_id: int, t: float) -> tuple[float | None, float | None]:
        """Times of the keyframes just before and just after time ``t`` in a video (None at the ends)."""
        (before,), = self._query("SELECT MAX(timestamp) FROM keyframes WHERE video_id = ? AND timestamp < ?",
                                 (video_id, t - 1e-6))
        (after,), = self._query("SELECT MIN(timestamp) FROM keyframes WHERE video_id = ? AND timestamp > ?",
                                (video_id, t + 1e-6))
        return (None if before is None else float(before)), (None if after is None else float(after))

    def mark_embedded(self, ids: Sequence[int], value: bool = True) -> None:
        with self.transaction() as cur:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start:start + 500])
                marks = ", ".join("?" * len(chunk))
                cur.execute(f"UPDATE keyframes SET embedded = ? WHERE id IN ({marks})", [value, *chunk])

    def mark_all_unembedded(self) -> int:
        """Every keyframe needs embedding again (a new or rebuilt collection); returns how many were flagged."""
        with self.transaction() as cur:
            cur.execute("UPDATE keyframes SET embedded = ? WHERE embedded = ?", (False, True))
            return cur.rowcount

    def embedded_per_video(self) -> dict[int, int]:
        """How many keyframes of each video are flagged as in Milvus (videos with keyframe rows only)."""
        rows = self._query("SELECT video_id, COALESCE(SUM(embedded), 0) FROM keyframes GROUP BY video_id")
        return {int(video_id): int(n) for video_id, n in rows}

    def counts(self) -> dict[str, int]:
        (videos, ready), = self._query("SELECT COUNT(*), COALESCE(SUM(status = ?), 0) FROM videos", (READY,))
        (kfs, embedded), = self._query("SELECT COUNT(*), COALESCE(SUM(embedded), 0) FROM keyframes")
        return {"videos": int(videos), "ready": int(ready), "keyframes": int(kfs), "embedded": int(embedded)}


class _Cursor:
    """A cursor that speaks the ``?`` placeholder style and raises CatalogueError on driver errors."""

    def __init__(self, cat: Catalogue, cur: Any):
        self._cat, self._cur = cat, cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cat._guard(self._cur.execute, self._cat._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cat._guard(self._cur.executemany, self._cat._sql(sql), [tuple(r) for r in rows])

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._cat._guard(self._cur.fetchall))

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


def _video(r: Sequence[Any]) -> Video:
    return Video(r[1], r[2], int(r[3]), r[4], r[5], int(r[6]), int(r[7]), float(r[8]), float(r[9]),
                 id=int(r[0]), keyframe_count=int(r[10]), status=r[11], owner=r[12], created_at=r[13],
                 updated_at=r[14])


def _keyframe(r: Sequence[Any]) -> KeyframeRow:
    return KeyframeRow(int(r[2]), int(r[3]), int(r[4]), float(r[5]), r[6], r[7],
                       id=int(r[0]), video_id=int(r[1]), embedded=bool(r[8]))


def _wal(conn: sqlite3.Connection, wait_s: float = 60.0) -> None:
    """Switch a new database to WAL (readers never block the writer). WAL is stored in the file, so
    this is a no-op after the first run; the switch itself needs the database to itself and SQLite
    does not wait for that, so two processes creating one library at once retry here."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _open_sqlite(path: Path) -> Catalogue:
    def connect() -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=60)
        conn.execute("PRAGMA foreign_keys = ON")
        _wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    return Catalogue(connect, "sqlite", (sqlite3.Error, OSError), f"SQLite {path}")


def _open_mysql(cfg: Config) -> Catalogue:
    import pymysql

    m = cfg.catalogue.mysql
    where = f"MySQL {m.user}@{m.unix_socket or f'{m.host}:{m.port}'}/{m.database}"

    def connect(database: str | None = m.database) -> Any:
        return pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password, database=database,
                               unix_socket=m.unix_socket or None, charset="utf8mb4", autocommit=False,
                               connect_timeout=m.connect_timeout)

    def connect_creating() -> Any:
        """Connect, creating the database on first use (a fresh MySQL has only the user)."""
        try:
            return connect()
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != 1049:  # ER_BAD_DB_ERROR
                raise
            bootstrap = connect(None)
            with bootstrap.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{m.database.replace('`', '``')}` CHARACTER SET utf8mb4")
            bootstrap.close()
            return connect()

    return Catalogue(connect_creating, "mysql", (pymysql.err.MySQLError, OSError), where)


def open_catalogue(cfg: Config) -> Catalogue:
    """The catalogue named by config: SQLite under data_dir by default, MySQL when configured."""
    if cfg.catalogue.backend == "mysql":
        return _open_mysql(cfg)
    return _open_sqlite(cfg.sqlite_path)
