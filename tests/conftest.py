"""Shared test fixtures: the code/ import path, the shared clips, configs on both catalogue backends.

MySQL tests use the throwaway MariaDB that .ci/run starts (``P4V_TEST_MYSQL_*``); without those
variables they start their own through ``.ci/mariadb.sh`` when MariaDB is installed, and are
skipped with the reason otherwise. Each test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "code"
sys.path.insert(0, str(CODE))

from utils.config import Config, load_config  # noqa: E402

SHARED = (ROOT.parent / "shared" / "data").resolve()  # Create records resolved paths
VIDEOS = SHARED / "videos"
MYSQL_PASSWORD_ENV = "P4V_MYSQL_PASSWORD"


def need_videos() -> Path:
    if not VIDEOS.is_dir():
        pytest.skip(f"shared test clips not found at {VIDEOS} (see ../shared/data/MANIFEST.md)")
    return VIDEOS


@pytest.fixture(scope="session")
def videos() -> Path:
    return need_videos()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def mysql_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Connection facts of a real MariaDB/MySQL server: CI's, or one started here for the session."""
    env = os.environ
    if env.get("P4V_TEST_MYSQL_HOST"):
        yield {
            "host": env["P4V_TEST_MYSQL_HOST"],
            "port": env.get("P4V_TEST_MYSQL_PORT", "3306"),
            "user": env.get("P4V_TEST_MYSQL_USER", "p4v"),
            "password": env.get("P4V_TEST_MYSQL_PASSWORD", ""),
            "dir": env.get("P4V_TEST_MARIADB_DIR", ""),
        }
        return
    if not shutil.which("mariadbd") and not Path("/usr/sbin/mariadbd").exists():
        pytest.skip("no MySQL server: set P4V_TEST_MYSQL_HOST/PORT/USER/PASSWORD or install mariadb-server")
    d = tmp_path_factory.mktemp("mariadb")
    port = str(_free_port())
    password = "p4v-test-only"
    run_env = {**env, MYSQL_PASSWORD_ENV: password}
    subprocess.run(["bash", str(ROOT / ".ci" / "mariadb.sh"), "start", str(d), port], check=True, env=run_env,
                   stdout=subprocess.DEVNULL)
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "p4v", "password": password, "dir": str(d)}
    finally:
        subprocess.run(["bash", str(ROOT / ".ci" / "mariadb.sh"), "stop", str(d)], check=False,
                       stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of a real Milvus standalone server: CI's, or one started here (pip package ``milvus``)."""
    if os.environ.get("P4V_TEST_MILVUS_URI"):
        yield os.environ["P4V_TEST_MILVUS_URI"]
        return
    if not shutil.which("milvus-server"):
        pytest.skip("no Milvus server: set P4V_TEST_MILVUS_URI or pip install -r requirements-dev.txt")
    d = tmp_path_factory.mktemp("milvus")
    port = "29530"
    script = str(ROOT / ".ci" / "milvus.sh")
    subprocess.run(["bash", script, "start", str(d), port], check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", script, "stop", str(d)], check=False, stdout=subprocess.DEVNULL)


def make_config(tmp: Path, backend: str, mysql: dict[str, str] | None = None, **env: str) -> Config:
    """A config rooted in ``tmp`` (its own data dir) for ``backend``; extra P4V_* overrides in ``env``."""
    overrides = {"P4V_DATA_DIR": str(tmp / "data"), "P4V_CATALOGUE__BACKEND": backend, **env}
    if backend == "mysql":
        assert mysql is not None
        overrides.update({
            "P4V_CATALOGUE__MYSQL__HOST": mysql["host"],
            "P4V_CATALOGUE__MYSQL__PORT": mysql["port"],
            "P4V_CATALOGUE__MYSQL__USER": mysql["user"],
            "P4V_CATALOGUE__MYSQL__DATABASE": f"p4v_test_{uuid.uuid4().hex[:12]}",
            MYSQL_PASSWORD_ENV: mysql["password"],
        })
    return load_config(ROOT / "config.yaml", environ={**os.environ, **overrides})


def config_env(cfg: Config) -> dict[str, str]:
    """Environment that makes a subprocess script see exactly ``cfg`` (for CLI tests)."""
    m = cfg.catalogue.mysql
    return {
        **os.environ,
        "P4V_DATA_DIR": str(cfg.data_path),
        "P4V_CATALOGUE__BACKEND": cfg.catalogue.backend,
        "P4V_CATALOGUE__MYSQL__HOST": m.host,
        "P4V_CATALOGUE__MYSQL__PORT": str(m.port),
        "P4V_CATALOGUE__MYSQL__USER": m.user,
        "P4V_CATALOGUE__MYSQL__DATABASE": m.database,
        "P4V_MILVUS__URI": cfg.milvus_uri,
        "P4V_MILVUS__COLLECTION": cfg.milvus.collection,
        MYSQL_PASSWORD_ENV: m.password,
    }


def drop_mysql_database(cfg: Config) -> None:
    import pymysql

    m = cfg.catalogue.mysql
    conn = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{m.database}`")
    conn.close()


@pytest.fixture(params=["sqlite", "mysql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cfg(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Config]:
    """A fresh, empty library on the parametrised catalogue backend."""
    mysql = request.getfixturevalue("mysql_server") if backend == "mysql" else None
    c = make_config(tmp_path, backend, mysql)
    yield c
    if backend == "mysql":
        drop_mysql_database(c)


def run_script(name: str, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``code/<name>`` as a user would, from an unrelated working directory."""
    return subprocess.run([sys.executable, str(CODE / name), *args], env=env, cwd="/", capture_output=True,
                          text=True, timeout=timeout)
