"""The command line around a migration, run as users run it: a labelled pre-migration backup, list (type, age,
label, every database), info (label, source server), download, restore latest, diff against the live database,
and the messages a new user meets on the way.

One labelled backup (module-scoped) serves every test; Discord is a stand-in server that records notices.
Commands that start or follow runs are real subprocesses; those that only read storage (list, info, download)
or refuse their arguments are called in this process (CliWorld.call), with the same environment and folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import subprocess
import sys

import dagster as dg
import psycopg
import pytest

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.encryption import parse_key
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupId
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.storage.s3 import S3Storage
from tests.support.cli import CLI, make_world, row_counts
from tests.support.discord_stub import DiscordStub
from tests.support.processes import free_port, start_process, stop_process, wait_for_http
from tests.support.seed import SEED_COUNTS

LABEL = "012_add_hybrid_search"
MIGRATION = (
    "ALTER TABLE app.users ADD COLUMN search_vector tsvector;"
    "CREATE INDEX users_search_idx ON app.users USING gin (search_vector);"
    "CREATE TABLE app.chunks (id int PRIMARY KEY, body text);"
    "CREATE FUNCTION app.rank(q text) RETURNS int LANGUAGE sql AS 'SELECT 1';"
)


@pytest.fixture(scope="module")
def discord():
    with DiscordStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def world(pg_admin_url, moto_server, tmp_path_factory, discord):
    world = make_world(pg_admin_url, moto_server, tmp_path_factory.mktemp("cli_migration"))
    world.env["DISCORD_WEBHOOK_URL"] = discord.webhook_url
    yield world
    world.drop_databases()


@pytest.fixture(scope="module")
def backup(world):
    """`backup-db backup --type pre-migration --label 012_add_hybrid_search`, once: (its JSON, the process)."""
    result = world.run("backup", "--type", "pre-migration", "--label", LABEL, "--json", timeout=180)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result


def _manifest(world, name: str) -> dict:
    return json.loads(world.s3.get_object(Bucket=world.bucket, Key=f"db-backups/{name}.dump.json")["Body"].read())


def _copy_backup(world, data, new_name: str, **manifest_changes) -> None:
    """Another backup made from the real one's objects, its manifest changed as given."""
    manifest = Manifest.from_json(world.s3.get_object(Bucket=world.bucket, Key=data["key"] + ".json")["Body"].read())
    manifest.name, manifest.key = new_name, f"db-backups/{new_name}.dump"
    manifest.backup_id = "_".join(new_name.rsplit("_", 3)[1:])
    manifest.type = new_name.rsplit("_", 3)[1]
    for field, value in manifest_changes.items():
        setattr(manifest, field, value)
    world.s3.copy_object(Bucket=world.bucket, Key=manifest.key, CopySource={"Bucket": world.bucket, "Key": data["key"]})
    world.s3.put_object(Bucket=world.bucket, Key=manifest.key + ".json", Body=manifest.to_json())


def _delete_backup(world, name: str) -> None:
    keys = [f"db-backups/{name}{suffix}" for suffix in (".dump", ".dump.json", ".dump.verified.json")]
    world.s3.delete_objects(Bucket=world.bucket, Delete={"Objects": [{"Key": k} for k in keys]})


# ------------------------------------------------------------------------------------------ the backup itself


def test_version_is_printed_without_configuration(world):
    result = world.call("--version", env={"DATABASE_URL": None})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("backup-db 0.")


def test_label_and_source_server_are_stored_and_shown_everywhere(world, backup, discord):
    data, result = backup
    assert data["label"] == LABEL and data["type"] == "pre-migration"
    manifest = _manifest(world, data["name"])
    source = PostgresTarget.from_url(world.db_url)
    assert manifest["label"] == LABEL
    assert (manifest["source_host"], manifest["source_port"]) == (source.host, source.port)
    assert "password" not in json.dumps(manifest).lower()

    # The UI: the run's tag and the stored backup's metadata.
    with world.instance() as instance:
        run = instance.get_run_by_id(data["run_id"])
        [record] = instance.fetch_materializations(dg.AssetKey("offsite_backup"), limit=1).records
    assert run.tags["backup/label"] == LABEL
    metadata = record.asset_materialization.metadata
    assert metadata["label"].value == LABEL and metadata["source_server"].value == source.server

    # Discord: the success notice names the label.
    [notice] = discord.wait_for_messages(1, timeout=15)
    assert f"Label: `{LABEL}`" in notice and data["name"] in notice

    # Sizes and counts read as a person reads them.
    assert " bytes) so far" not in result.stderr and " bytes on disk" not in result.stderr


def test_backup_text_summary_has_label_counts_and_no_dead_link(world, backup, discord):
    result = world.call("backup", "--type", "manual", "--label", "hotfix 7", "--quiet", timeout=180)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "stored and verified" in out and "4 tables, 6,700 rows" in out and "label hotfix 7" in out
    assert "\x1b[" not in out + result.stderr  # not a terminal: no colour
    # No DAGSTER_WEBSERVER_URL and (unless one really runs here) no webserver: no link to nowhere.
    if not _webserver_at_default():
        # The first line names where backups live (the S3 endpoint's own http:// address); no line links a run.
        links = [line for line in result.stderr.splitlines()[1:] if "http://" in line]
        assert not links and "None" not in result.stderr, result.stderr
    name = out.split()[1]
    _delete_backup(world, name)


def test_bad_label_is_refused_before_anything_runs(world):
    with world.instance() as instance:
        runs_before = len(instance.get_runs())
    result = world.call("backup", "--label", "../../etc; rm -rf")
    assert result.returncode == 2
    assert "label '../../etc; rm -rf' is not usable" in result.stderr and "012_add_hybrid_search" in result.stderr
    with world.instance() as instance:
        assert len(instance.get_runs()) == runs_before


# ------------------------------------------------------------------------------------------ list and info


def test_list_shows_type_age_and_label(world, backup):
    data, _ = backup
    table = world.call("list")
    assert table.returncode == 0, table.stderr
    header, _rule, row, *_ = table.stdout.splitlines()
    assert header.split() == ["Filename", "Type", "Size", "Created", "Age", "Verified", "Label"]
    cells = row.split()
    assert cells[0] == f"{data['name']}.dump" and cells[1] == "pre-migration" and cells[-1] == LABEL
    assert cells[-3] in ("s", "min")  # age: seconds or minutes old
    [listed] = world.call_json("list")[0]
    assert listed["label"] == LABEL and listed["type"] == "pre-migration"


def test_list_all_shows_every_database_under_the_prefix(world, backup):
    data, _ = backup
    other = "otherapp_daily_20260101_060000"
    _copy_backup(world, data, other, label=None)
    try:
        mine = world.call("list")
        assert other not in mine.stdout
        everything = world.call("list", "--all")
        assert everything.returncode == 0, everything.stderr
        lines = everything.stdout.splitlines()
        assert lines[0].split()[:3] == ["Database", "Filename", "Type"]
        assert any(line.split()[:3] == ["otherapp", f"{other}.dump", "daily"] for line in lines)
        assert any(line.split()[:3] == [world.db_name, f"{data['name']}.dump", "pre-migration"] for line in lines)
        assert lines[-1].startswith("Total: 2 backups of 2 databases")
        listed, _ = world.call_json("list", "--all")
        assert {(b["database"], b["type"]) for b in listed} == {("otherapp", "daily"), (world.db_name, "pre-migration")}
    finally:
        _delete_backup(world, other)


def test_info_shows_label_source_server_and_human_counts(world, backup):
    data, _ = backup
    source = PostgresTarget.from_url(world.db_url)
    shown = world.call("info", "latest")
    assert shown.returncode == 0, shown.stderr
    assert f"latest backup: {data['name']}" in shown.stderr
    assert f"Label     {LABEL}" in shown.stdout
    assert f"Database  {world.db_name} on {source.server} (PostgreSQL" in shown.stdout
    assert "Tables    4 tables, 6,700 rows:" in shown.stdout
    assert " bytes)" not in shown.stdout
    assert "warning" not in shown.stderr
    info, _ = world.call_json("info", data["name"])
    assert info["label"] == LABEL and info["source_server"] == source.server


def test_one_table_and_zero_rows_read_right(world, backup):
    data, _ = backup
    single = f"{world.db_name}_manual_20250101_000000"
    _copy_backup(world, data, single, tables={"public.only_one": 0}, label=None)
    try:
        shown = world.call("info", single)
        assert shown.returncode == 0, shown.stderr
        assert "Tables    1 table, 0 rows:" in shown.stdout
    finally:
        _delete_backup(world, single)


def test_two_servers_writing_one_prefix_are_told_apart(world, backup):
    data, _ = backup
    foreign = f"{world.db_name}_manual_20250102_000000"
    _copy_backup(world, data, foreign, source_host="db-replica.internal", source_port=5433, label=None)
    try:
        shown = world.call("info", foreign)
        assert shown.returncode == 0, shown.stderr
        assert "on db-replica.internal:5433" in shown.stdout
        assert "two servers write the same prefix" in shown.stderr and "db-replica.internal:5433" in shown.stderr
        assert "BACKUP_NAME_PREFIX" in shown.stderr
        listed = world.call("list")
        assert "two servers write the same prefix" in listed.stderr
    finally:
        _delete_backup(world, foreign)


# ------------------------------------------------------------------------------------------ download


def test_download_writes_a_checked_pg_restore_file(world, backup, tmp_path):
    data, _ = backup
    target = tmp_path / "before-migration.dump"
    result = world.call("download", "latest", "--type", "pre-migration", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes()[:5] == b"PGDMP"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == data["sha256"]
    assert "sha256 matched" in result.stdout and "pg_restore --dbname=DB" in result.stdout
    listed = subprocess.run(["pg_restore", "--list", str(target)], capture_output=True, text=True)
    assert listed.returncode == 0 and "TABLE DATA app users" in listed.stdout

    again = world.call("download", data["name"], "-o", str(target))
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    to_stdout = subprocess.run(
        [str(CLI), "download", data["name"], "-o", "-"], env=world.env, cwd=world.work_dir, capture_output=True
    )
    assert to_stdout.returncode == 0 and hashlib.sha256(to_stdout.stdout).hexdigest() == data["sha256"]


def test_download_of_a_damaged_backup_leaves_no_file(world, backup, tmp_path):
    data, _ = backup
    damaged = f"{world.db_name}_manual_20250103_000000"
    _copy_backup(world, data, damaged, label=None)
    body = bytearray(world.s3.get_object(Bucket=world.bucket, Key=data["key"])["Body"].read())
    body[len(body) // 2] ^= 0xFF  # same size, different bytes
    world.s3.put_object(Bucket=world.bucket, Key=f"db-backups/{damaged}.dump", Body=bytes(body))
    try:
        result = world.call("download", damaged, "-o", str(tmp_path / "damaged.dump"))
        assert result.returncode == 1
        assert "is corrupted: its sha256 is" in result.stderr
        assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one
    finally:
        _delete_backup(world, damaged)


def test_download_decrypts_an_encrypted_backup(world, tmp_path):
    key_text = base64.b64encode(hashlib.sha256(b"download test key").digest()).decode()
    storage = S3Storage(world.s3, world.bucket, None)
    catalog = BackupCatalog(storage, "db-backups", "encapp", parse_key(key_text, "BACKUP_ENCRYPTION_KEY"))
    backup_id = BackupId.parse("manual_20250104_000000")
    stored = take_backup(PostgresTarget.from_url(world.db_url), catalog, backup_id, log=lambda _m: None)
    name = stored.manifest.name
    try:
        sealed = world.s3.get_object(Bucket=world.bucket, Key=stored.manifest.key)["Body"].read()
        assert not sealed.startswith(b"PGDMP")
        target = tmp_path / "plain.dump"
        env = {"BACKUP_NAME_PREFIX": "encapp", "BACKUP_ENCRYPTION_KEY": key_text}
        result = world.call("download", name, "-o", str(target), env=env)
        assert result.returncode == 0, result.stderr
        assert target.read_bytes()[:5] == b"PGDMP" and "decrypted" in result.stdout
        without_key = world.call(
            "download", name, "-o", str(tmp_path / "other.dump"), env={"BACKUP_NAME_PREFIX": "encapp"}
        )
        assert without_key.returncode != 0 and "BACKUP_ENCRYPTION_KEY" in without_key.stderr
    finally:
        _delete_backup(world, name)


# ------------------------------------------------------------------------------------------ restore latest, diff


def test_restore_latest_of_a_type_and_diff_after_a_migration(world, backup):
    data, _ = backup
    # The rollback copy: the newest pre-migration backup, restored without typing its name.
    copy = world.new_database_name("latest")
    restored = world.call(
        "restore", "latest", "--type", "pre-migration", "--target-db", copy, "--confirm", "RESTORE", timeout=180
    )
    assert restored.returncode == 0, restored.stderr
    assert f"latest pre-migration backup: {data['name']}" in restored.stderr
    assert "4 tables, 6,700 rows" in restored.stdout
    assert row_counts(world.url_of(copy)) == SEED_COUNTS

    # The copy is the "live" database of this diff (its backups keep the source's prefix).
    env = {"DATABASE_URL": world.url_of(copy), "BACKUP_NAME_PREFIX": world.db_name}
    same = world.call("diff", "latest", env=env, timeout=120)
    assert same.returncode == 0, same.stderr
    assert "No differences" in same.stdout

    with psycopg.connect(world.url_of(copy), autocommit=True) as conn:
        conn.execute(MIGRATION)
        conn.execute("DROP TABLE public.empty_table; ALTER TABLE billing.invoices ALTER COLUMN id TYPE bigint")
    diff = world.call("diff", data["name"], env=env, timeout=120)
    assert diff.returncode == 0, diff.stderr
    out = diff.stdout
    assert f"label {LABEL}" in out
    assert "  + app.chunks" in out and "  - public.empty_table" in out
    assert "  + app.users.search_vector  tsvector" in out
    assert "  + app.users_search_idx  CREATE INDEX users_search_idx ON app.users USING gin (search_vector)" in out
    assert "  ~ billing.invoices.id  integer NOT NULL" in out and "-> bigint NOT NULL" in out
    assert "  + app.rank(q text)" in out
    assert "app.chunks.id" not in out  # a new table's columns are not listed again
    assert not world.scratch_databases_left()  # the scratch database is gone
    as_json, _ = world.call_json("diff", data["name"], env=env, timeout=120)
    assert as_json["identical"] is False
    assert [c["name"] for c in as_json["tables"]["added"]] == ["app.chunks"]
    assert [c["name"] for c in as_json["functions"]["added"]] == ["app.rank(q text)"]

    # The rollback: restore over the very database DATABASE_URL names; afterwards nothing differs. The backup is
    # of the world's source database, which the copy stands in for: --from-other-source says so.
    rolled_back = world.call(
        "restore",
        "latest",
        "--type",
        "pre-migration",
        "--target-db",
        copy,
        "--replace",
        "--from-other-source",
        "--confirm",
        "RESTORE",
        env=env,
        timeout=180,
    )
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert row_counts(world.url_of(copy)) == SEED_COUNTS
    assert "No differences" in world.call("diff", "latest", env=env, timeout=120).stdout
    assert not world.scratch_databases_left()

    none_daily = world.call("restore", "latest", "--type", "daily", "--target-db", "x", "--confirm", "RESTORE")
    assert none_daily.returncode == 2 and "there is no daily backup" in none_daily.stderr


# ------------------------------------------------------------------------------------------ messages


def test_a_bucket_set_by_do_spaces_bucket_is_named_so(world):
    env = {"BACKUP_S3_BUCKET": None, "DO_SPACES_BUCKET": "bp-no-such-space"}
    result = world.call("list", env=env)
    assert result.returncode == 1
    assert "the bucket 'bp-no-such-space' does not exist" in result.stderr
    assert "DO_SPACES_BUCKET" in result.stderr and "BACKUP_S3_BUCKET" not in result.stderr


@pytest.fixture(scope="module")
def moto_with_auth():
    """A moto server that checks credentials and knows none, so every key is refused, as S3 would."""
    port = free_port()
    process = start_process(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/moto-api/", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.mark.parametrize(
    "keys, named",
    [
        ({"AWS_ACCESS_KEY_ID": "AKIAWRONGKEY0000"}, "Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        (
            {
                "AWS_ACCESS_KEY_ID": None,
                "AWS_SECRET_ACCESS_KEY": None,
                "DO_SPACES_KEY": "WRONG",
                "DO_SPACES_SECRET": "x" * 12,
            },
            "Check DO_SPACES_KEY and DO_SPACES_SECRET",
        ),
    ],
)
def test_bad_credentials_read_the_same_in_every_verb(world, backup, moto_with_auth, keys, named, tmp_path):
    data, _ = backup
    env = {"BACKUP_S3_ENDPOINT_URL": moto_with_auth, "BACKUP_S3_MAX_ATTEMPTS": "1", **keys}
    # `list` lists (the answer names InvalidAccessKeyId), `info` and `download` look objects up (a bare 403).
    for verb in (["list"], ["info", data["name"]], ["download", data["name"], "-o", str(tmp_path / "x.dump")]):
        result = world.call(*verb, env=env)
        assert result.returncode == 1, result.stderr
        assert f"bucket '{world.bucket}' at {moto_with_auth}: the credentials were refused. {named}" in result.stderr
        assert "InvalidAccessKeyId" not in result.stderr and "403" not in result.stderr


def test_a_database_name_that_cannot_prefix_file_names_says_where_the_prefix_comes_from(world):
    url = world.admin_url.rsplit("/", 1)[0] + "/my%20app's%20db"
    result = world.call("list", env={"DATABASE_URL": url})
    assert result.returncode == 2
    assert "the database name 'my app's db' cannot start backup file names" in result.stderr
    assert "the prefix defaults to the database name" in result.stderr
    assert "BACKUP_NAME_PREFIX=my_app_s_db" in result.stderr


def test_name_arguments_have_help(world):
    for verb in ("verify", "restore", "info", "download", "diff"):
        shown = world.call(verb, "--help")
        assert shown.returncode == 0
        text = " ".join(shown.stdout.split())  # argparse wraps lines
        assert "NAME the backup to" in text and "`latest` for the newest one" in text, verb


def test_colour_only_on_a_terminal(world, backup, tmp_path):
    data, _ = backup

    def on_terminal(*args, **env):
        controller, terminal = pty.openpty()
        try:
            process = subprocess.run(
                [str(CLI), *args],
                env={**world.env, **env},
                cwd=world.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=terminal,
                stderr=terminal,
                timeout=60,
            )
            os.close(terminal)
            terminal = None
            chunks = []
            while True:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return process.returncode, b"".join(chunks).decode()
        finally:
            if terminal is not None:
                os.close(terminal)
            os.close(controller)

    code, shown = on_terminal("download", data["name"], "-o", str(tmp_path / "a.dump"))
    assert code == 0 and "\x1b[32mDownloaded" in shown
    code, plain = on_terminal("download", data["name"], "-o", str(tmp_path / "b.dump"), NO_COLOR="1")
    assert code == 0 and "\x1b[" not in plain and "Downloaded" in plain
    piped = world.call("download", data["name"], "-o", str(tmp_path / "c.dump"))
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout


def _webserver_at_default() -> bool:
    from backup_pipeline.core.webserver import DEFAULT_WEBSERVER_URL, webserver_answers

    return webserver_answers(DEFAULT_WEBSERVER_URL)


def test_run_links_come_from_the_setting_or_a_running_webserver():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from backup_pipeline.core.webserver import run_link, webserver_answers

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"dagster_webserver_version": "1.13.0"} if self.path == "/server_info" else {}).encode()
            self.send_response(200 if self.path == "/server_info" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert webserver_answers(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert not webserver_answers(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert run_link("https://dagster.example.com/", "abc") == "https://dagster.example.com/runs/abc"


def test_follow_ends_with_the_summary_of_the_verb_it_follows(world, backup):
    started = world.run("backup", "--type", "manual", "--quiet", "--no-wait", "--json", timeout=120)
    assert started.returncode == 0, started.stderr
    submitted = json.loads(started.stdout)
    followed = world.call("follow", submitted["run_id"], timeout=180)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.startswith(f"Backup {submitted['name']} stored and verified: ")
    assert "4 tables, 6,700 rows" in followed.stdout and f"run {submitted['run_id']}" in followed.stdout
    as_json, _ = world.call_json("follow", submitted["run_id"])
    assert as_json["name"] == submitted["name"] and as_json["verified"] is True and as_json["rows"] == 6700
    _delete_backup(world, submitted["name"])


def test_a_failed_run_shows_no_dagster_internal_lines(world, tmp_path):
    from tests.support.hardening import client_tools_folder

    failing = client_tools_folder(
        tmp_path / "bin",
        'if [ "$1" = "--version" ]; then exec "$REAL/pg_dump" --version; fi\n'
        'echo "pg_dump: error: query failed: server closed the connection unexpectedly" >&2\nexit 1',
    )
    result = world.call("backup", "--quiet", env={"BACKUP_PG_BIN_DIR": str(failing)})
    assert result.returncode == 1
    assert "pg_dump failed: pg_dump: error: query failed: server closed the connection unexpectedly" in result.stderr
    assert "Dependencies for step" not in result.stderr and "Not executing" not in result.stderr
