"""The server deployment files agree with each other: code/milvus/docker-compose.yml and config.servers.yaml.

Pure file checks (PyYAML); no Docker needed. When a ``docker compose`` CLI is present, the compose file is also
checked by ``docker compose config`` (offline); otherwise that one test is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "code" / "milvus" / "docker-compose.yml"
CONFIG = ROOT / "config.yaml"
SERVERS = ROOT / "config.servers.yaml"

MILVUS_IMAGE = "milvusdb/milvus"
MYSQL_IMAGE = "mysql"
ATTU_IMAGE = "zilliz/attu"

# Settings config.servers.yaml may change relative to config.yaml; everything else must be identical.
PROFILE_CHANGES = {("catalogue", "backend"), ("milvus", "uri")}

# ${VAR:?message} — a required variable, no default: the only acceptable form for a secret.
REQUIRED_VAR = re.compile(r"^\$\{(?P<name>[A-Z_][A-Z0-9_]*):\?[^}]*\}$")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PASSWD", re.I)


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load(COMPOSE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "compose file has no services"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def servers_cfg() -> dict[str, Any]:
    return _load(SERVERS)


def _image_repo_tag(image: str) -> tuple[str, str | None]:
    """'quay.io/coreos/etcd:v3.5.18' -> ('quay.io/coreos/etcd', 'v3.5.18'); no tag -> None."""
    if "@" in image:  # a digest pins too
        repo, digest = image.split("@", 1)
        if ":" in repo.rsplit("/", 1)[-1]:
            repo = repo.rsplit(":", 1)[0]
        return repo, "@" + digest
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return image, None
    repo, tag = image.rsplit(":", 1)
    return repo, tag


def _service_by_image(services: dict[str, dict[str, Any]], repo: str) -> tuple[str, dict[str, Any]]:
    found = [(name, s) for name, s in services.items() if _image_repo_tag(str(s.get("image", "")))[0] == repo]
    assert len(found) == 1, f"expected exactly one service running {repo}, found {[n for n, _ in found]}"
    return found[0]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        out = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _published_ports(service: dict[str, Any]) -> dict[int, int]:
    """container port -> published host port, from short ("[ip:]host:container[/proto]") or long syntax."""
    out: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out[int(entry["target"])] = int(entry.get("published", entry["target"]))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.split(":")
        if len(parts) == 1:
            out[int(parts[0])] = int(parts[0])
        else:
            out[int(parts[-1])] = int(parts[-2])
    return out


def _walk(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Flatten nested mappings into {path: leaf}."""
    if isinstance(tree, dict):
        out: dict[tuple[str, ...], Any] = {}
        for k, v in tree.items():
            out.update(_walk(v, prefix + (str(k),)))
        return out
    return {prefix: tree}


# --- the compose file ---------------------------------------------------------------------------------------------


def test_compose_parses_and_has_the_services(services: dict[str, dict[str, Any]]) -> None:
    repos = {_image_repo_tag(str(s.get("image", "")))[0] for s in services.values()}
    for repo in ("quay.io/coreos/etcd", "minio/minio", MILVUS_IMAGE, ATTU_IMAGE, MYSQL_IMAGE):
        assert repo in repos, f"no service runs {repo} (images: {sorted(repos)})"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"service {name} has no image"
        repo, tag = _image_repo_tag(str(image))
        assert tag, f"service {name}: image {image} has no tag"
        if tag.startswith("@"):
            continue
        assert tag.lower() not in {"latest", "stable", "main", "master", "nightly", "edge"}, \
            f"service {name}: image {image} is not pinned"
        assert re.search(r"\d", tag), f"service {name}: tag {tag!r} names no version"
        assert "$" not in str(image), f"service {name}: image must not come from a variable"


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        assert isinstance(hc, dict), f"service {name} has no healthcheck"
        assert not hc.get("disable"), f"service {name}: healthcheck disabled"
        test = hc.get("test")
        assert test, f"service {name}: healthcheck has no test"
        if isinstance(test, list):
            assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"service {name}: bad healthcheck {test}"
        for key in ("interval", "timeout", "retries"):
            assert key in hc, f"service {name}: healthcheck lacks {key}"


def test_depends_on_waits_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on")
        if not deps:
            continue
        assert isinstance(deps, dict), f"service {name}: depends_on must use the long form with a condition"
        for dep, spec in deps.items():
            assert dep in services, f"service {name} depends on unknown service {dep}"
            assert (spec or {}).get("condition") == "service_healthy", \
                f"service {name}: depends_on {dep} must wait for condition service_healthy"
    milvus_name, milvus = _service_by_image(services, MILVUS_IMAGE)
    _, attu = _service_by_image(services, ATTU_IMAGE)
    etcd_name, _ = _service_by_image(services, "quay.io/coreos/etcd")
    minio_name, _ = _service_by_image(services, "minio/minio")
    assert milvus_name in (attu.get("depends_on") or {}), "Attu must wait for Milvus"
    assert {etcd_name, minio_name} <= set(milvus.get("depends_on") or {}), "Milvus must wait for etcd and MinIO"


def test_volumes_are_named(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            source = vol.get("source") if isinstance(vol, dict) else str(vol).split(":", 1)[0]
            assert source in declared, f"service {name}: volume {vol!r} is not a declared named volume"


def test_expected_ports_are_published(services: dict[str, dict[str, Any]]) -> None:
    _, milvus = _service_by_image(services, MILVUS_IMAGE)
    _, mysql = _service_by_image(services, MYSQL_IMAGE)
    _, attu = _service_by_image(services, ATTU_IMAGE)
    assert _published_ports(milvus).get(19530) == 19530
    assert _published_ports(milvus).get(9091) == 9091
    assert _published_ports(mysql).get(3306) == 3306
    assert _published_ports(attu).get(3000) == 8000


def test_attu_points_at_the_milvus_service(services: dict[str, dict[str, Any]]) -> None:
    milvus_name, _ = _service_by_image(services, MILVUS_IMAGE)
    _, attu = _service_by_image(services, ATTU_IMAGE)
    url = _environment(attu).get("MILVUS_URL", "")
    assert url, "Attu has no MILVUS_URL"
    parts = urlsplit(url if "://" in url else f"//{url}")
    assert parts.hostname == milvus_name, f"MILVUS_URL {url!r} must name the service {milvus_name!r}"
    assert parts.port == 19530, f"MILVUS_URL {url!r} must use Milvus's container port 19530"


def test_mysql_service_settings(services: dict[str, dict[str, Any]]) -> None:
    _, mysql = _service_by_image(services, MYSQL_IMAGE)
    repo, tag = _image_repo_tag(str(mysql["image"]))
    assert tag and tag.startswith("8."), f"MySQL 8 expected, got {mysql['image']}"
    env = _environment(mysql)
    assert env.get("MYSQL_DATABASE") == "picture4video"
    assert env.get("MYSQL_USER") == "p4v"
    for key in ("MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD"):
        assert REQUIRED_VAR.match(env.get(key, "")), f"{key} must be ${{VAR:?message}}, got {env.get(key)!r}"


def test_no_password_literal_in_compose(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for key, value in _environment(svc).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_VAR.match(value), \
                    f"service {name}: {key} must come from a required variable (${{VAR:?msg}}), got {value!r}"
    # and anywhere else in the file (list-form environment, command lines): KEY: value / KEY=value
    for n, line in enumerate(COMPOSE.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        assert "minioadmin" not in code, f"line {n}: default MinIO credentials"
        for m in re.finditer(r"(?i)\b\w*(?:password|secret|token)\w*[\"']?\s*[:=]\s*(\S+)", code):
            assert m.group(1).startswith("${"), f"line {n}: a secret written in the file: {line.strip()!r}"


def test_milvus_and_minio_share_the_credentials(services: dict[str, dict[str, Any]]) -> None:
    _, milvus = _service_by_image(services, MILVUS_IMAGE)
    _, minio = _service_by_image(services, "minio/minio")
    m_env, o_env = _environment(milvus), _environment(minio)
    assert m_env.get("MINIO_ACCESS_KEY_ID") == o_env.get("MINIO_ROOT_USER")
    assert m_env.get("MINIO_SECRET_ACCESS_KEY") == o_env.get("MINIO_ROOT_PASSWORD")
    assert m_env.get("MINIO_ADDRESS", "").split(":")[0] in services
    assert m_env.get("ETCD_ENDPOINTS", "").split(":")[0] in services


# --- config.servers.yaml against the compose file and config.yaml -----------------------------------------------------


def test_servers_profile_matches_compose(services: dict[str, dict[str, Any]], servers_cfg: dict[str, Any]) -> None:
    _, mysql = _service_by_image(services, MYSQL_IMAGE)
    _, milvus = _service_by_image(services, MILVUS_IMAGE)
    cat = servers_cfg["catalogue"]
    assert cat["backend"] == "mysql"
    my = cat["mysql"]
    assert my["host"] in ("127.0.0.1", "localhost")
    assert my["port"] == _published_ports(mysql)[3306]
    env = _environment(mysql)
    assert my["database"] == env["MYSQL_DATABASE"]
    assert my["user"] == env["MYSQL_USER"]
    # the toolkit reads the password from the same variable compose gives the p4v account
    sys.path.insert(0, str(ROOT / "code"))
    from utils.config import load_config

    password_env = load_config(SERVERS, environ={}).catalogue.mysql.password_env  # inherited from config.yaml
    assert REQUIRED_VAR.match(env["MYSQL_PASSWORD"]).group("name") == password_env

    uri = urlsplit(servers_cfg["milvus"]["uri"])
    assert uri.scheme in ("http", "https", "tcp", "grpc")
    assert uri.hostname in ("127.0.0.1", "localhost")
    assert uri.port == _published_ports(milvus)[19530]


def test_servers_profile_extends_config_yaml_with_two_changes(servers_cfg: dict[str, Any]) -> None:
    assert servers_cfg.get("extends") == "config.yaml"
    base = _walk(_load(CONFIG))
    prof = {k: v for k, v in _walk(servers_cfg).items() if k != ("extends",)}
    assert set(prof) <= set(base), f"unknown settings in config.servers.yaml: {sorted(set(prof) - set(base))}"
    differing = {k for k in prof if base[k] != prof[k]}
    assert differing == PROFILE_CHANGES, f"config.servers.yaml differs from config.yaml in {sorted(differing)}"


def test_servers_profile_loads(servers_cfg: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT / "code"))
    from utils.config import load_config

    cfg = load_config(SERVERS, environ={"P4V_MYSQL_PASSWORD": "x"})
    assert cfg.catalogue.backend == "mysql"
    assert cfg.milvus_uri == servers_cfg["milvus"]["uri"]
    assert cfg.catalogue.mysql.password == "x"


@pytest.mark.parametrize("path", [CONFIG, SERVERS], ids=lambda p: p.name)
def test_no_secret_in_config_files(path: Path) -> None:
    for key_path, value in _walk(_load(path)).items():
        key = key_path[-1]
        if not SECRET_NAME.search(key):
            continue
        # only the *name* of an environment variable may appear, e.g. password_env: P4V_MYSQL_PASSWORD
        assert key.endswith("_env"), f"{path.name}: {'.'.join(key_path)} looks like a secret written in the file"
        assert value is None or re.fullmatch(r"[A-Z_][A-Z0-9_]*", str(value)), \
            f"{path.name}: {'.'.join(key_path)} must name an environment variable, got {value!r}"


# --- optional: Docker's own parser ---------------------------------------------------------------------------------


def test_docker_compose_config_if_available() -> None:
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("no docker CLI")
    try:
        ok = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("docker CLI has no compose plugin")
    env = dict(os.environ, P4V_MYSQL_PASSWORD="check-only", P4V_MYSQL_ROOT_PASSWORD="check-only",
               P4V_MINIO_SECRET_KEY="check-only")
    run = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    missing = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True,
                             text=True, timeout=60,
                             env={k: v for k, v in env.items() if k != "P4V_MYSQL_PASSWORD"})
    assert missing.returncode != 0 and "P4V_MYSQL_PASSWORD" in missing.stderr
