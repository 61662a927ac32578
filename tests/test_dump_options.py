"""Dump options: directory format with parallel jobs, compression choices, and streaming in S3-sized parts."""

import hashlib
import math
import re
import subprocess
import zlib
from datetime import UTC, datetime

import dagster as dg
import psycopg
import pytest

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.dump_options import DEFAULT_COMPRESSION, Compression, DumpOptions
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_version
from backup_pipeline.core.postgres.clients import ClientTools, PgClient
from backup_pipeline.core.restore import restore_to_database
from backup_pipeline.core.storage import open_storage
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.storage.s3 import MAX_PART_BYTES, MAX_PARTS, S3Storage, part_size_for, upload_concurrency_for
from backup_pipeline.core.verify import verify_backup
from tests.support.cli import row_counts
from tests.support.pipeline import failure_message, run_backup
from tests.support.postgres_server import server_major
from tests.support.seed import SEED_COUNTS

MiB, GB, TiB = 2**20, 10**9, 2**40
S3_MIN_PART = 5 * MiB


def _content_digest(url: str) -> dict[str, str]:
    """md5 of every table's rows in key order: equal digests mean equal contents, not just equal counts."""
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
            ).fetchone()[0]
            for table in SEED_COUNTS
        }


def _client_for(url: str) -> PgClient:
    """The client a backup of `url` uses."""
    with psycopg.connect(url) as conn:
        return ClientTools.locate().for_server(*server_version(conn))


def _catalog(storage, url: str) -> BackupCatalog:
    return BackupCatalog(storage, "db-backups", PostgresTarget.from_url(url).dbname)


# --- part sizes: S3 allows 10,000 parts of 5 MiB to 5 GiB, objects up to 5 TiB ---------------------------------


@pytest.mark.parametrize("expected", [0, 1, 100 * MiB, 1 * GB, 4 * GB, 40 * GB, 100 * GB, 1 * TiB, 5 * TiB])
def test_part_size_keeps_a_dump_twice_the_expected_size_within_s3_limits(expected):
    part = part_size_for(expected)
    assert S3_MIN_PART <= part <= MAX_PART_BYTES
    assert part % MiB == 0
    assert math.ceil(max(2 * expected, 1) / part) <= MAX_PARTS


def test_part_size_grows_with_the_dump_and_a_5_tib_dump_fits():
    sizes = [part_size_for(n) for n in (1 * GB, 40 * GB, 100 * GB, 1 * TiB, 5 * TiB)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert part_size_for(1 * GB) == part_size_for(4 * GB) == 8 * MiB  # small dumps: small parts, little memory
    assert math.ceil(5 * TiB / part_size_for(int(2.5 * TiB))) <= MAX_PARTS  # half the expectation still fits
    assert math.ceil(5 * TiB / part_size_for(5 * TiB)) <= MAX_PARTS // 2


@pytest.mark.parametrize("part", [8 * MiB, 16 * MiB, 64 * MiB, 1024 * MiB, MAX_PART_BYTES])
def test_parts_held_in_memory_stay_within_the_budget(part):
    concurrency, in_memory = upload_concurrency_for(part)
    assert 1 <= concurrency < in_memory  # one part is read while the others upload
    assert in_memory * part <= max(64 * MiB, 2 * part)


# --- configuration -------------------------------------------------------------------------------------------------


def test_dump_options_come_from_the_environment():
    db = load_settings({"BACKUP_DUMP_FORMAT": "directory", "BACKUP_DUMP_JOBS": "3", "BACKUP_COMPRESSION": "gzip:9"})
    assert db.databases[0].dump_options() == DumpOptions("directory", 3, Compression("gzip", 9))
    # Nothing set: gzip level 1, the benchmark's choice (bench/README.md), whatever the pg_dump.
    unset = load_settings({}).databases[0].dump_options()
    assert unset == DumpOptions("custom", 1, Compression("gzip", 1)) == DumpOptions()
    assert unset.description == "gzip:1" == str(DEFAULT_COMPRESSION)
    for major, spelled in (
        (12, "--compress=1"),
        (15, "--compress=1"),
        (16, "--compress=gzip:1"),
        (18, "--compress=gzip:1"),
    ):
        assert spelled in unset.pg_dump_args(major, f"{major}.1")
    # `gzip` alone is pg_dump's own default (level 6), `default` is ours.
    assert "--compress=gzip" in DumpOptions(compression="gzip").pg_dump_args(18, "18.6")
    assert not any(a.startswith("--compress") for a in DumpOptions(compression="gzip").pg_dump_args(15, "15.8"))
    assert DumpOptions(compression="default") == unset


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BACKUP_DUMP_FORMAT": "tar"}, "BACKUP_DUMP_FORMAT 'tar'"),
        ({"BACKUP_DUMP_JOBS": "4"}, "BACKUP_DUMP_FORMAT=directory"),
        ({"BACKUP_DUMP_FORMAT": "directory", "BACKUP_DUMP_JOBS": "0"}, "BACKUP_DUMP_JOBS"),
        ({"BACKUP_COMPRESSION": "gzip:10"}, "from 0 to 9"),
        ({"BACKUP_COMPRESSION": "brotli"}, "BACKUP_COMPRESSION 'brotli'"),
        ({"BACKUP_COMPRESSION": "zstd:99"}, "from 1 to 22"),
    ],
)
def test_bad_dump_options_are_refused_naming_the_variable(env, named):
    with pytest.raises(ConfigurationError, match=named):
        load_settings(env)


@pytest.mark.parametrize(
    ("text", "on_15", "on_16"),
    [
        ("gzip:9", "--compress=9", "--compress=gzip:9"),
        ("1", "--compress=1", "--compress=gzip:1"),
        ("none", "--compress=0", "--compress=none"),
        ("zstd:3", None, "--compress=zstd:3"),
    ],
)
def test_compression_is_spelled_the_way_each_pg_dump_understands(text, on_15, on_16):
    options = DumpOptions(compression=text)
    assert on_16 in options.pg_dump_args(16, "16.4")
    if on_15 is None:
        with pytest.raises(ConfigurationError, match="needs pg_dump 16 or newer.*15.8.*gzip:N"):
            options.pg_dump_args(15, "15.8")
    else:
        assert on_15 in options.pg_dump_args(15, "15.8")


# --- real dumps --------------------------------------------------------------------------------------------------


def test_gzip_levels_are_applied_recorded_and_each_backup_verifies(seeded_db, tmp_path, pg_admin_url):
    storage = LocalStorage(tmp_path / "backups")
    catalog = _catalog(storage, seeded_db)
    target = PostgresTarget.from_url(seeded_db)
    sizes = {}
    for second, level in enumerate(["none", "gzip:1", "gzip:9"]):
        backup_id = BackupId(created_at=datetime(2026, 1, 13, 15, 0, second, tzinfo=UTC), type="manual")
        result = take_backup(target, catalog, backup_id, options=DumpOptions(compression=level), log=lambda _: None)
        manifest = result.manifest
        assert (manifest.format, manifest.compression) == ("custom", level)
        dump_path = tmp_path / "backups" / manifest.key
        pg_restore = _client_for(seeded_db).path("pg_restore")
        header = subprocess.run([pg_restore, "--list", str(dump_path)], capture_output=True, text=True, check=True)
        # pg_restore 16 and newer name the method; older ones print the gzip level alone.
        assert re.search(rf"Compression: ({0 if level == 'none' else level.split(':')[1]}|none|gzip)\n", header.stdout)
        sizes[level] = manifest.size_bytes
        outcome = verify_backup(
            catalog,
            BackupName(catalog.name_prefix, backup_id),
            PostgresTarget.from_url(pg_admin_url),
            log=lambda _: None,
        )
        assert outcome.tables == SEED_COUNTS
    assert sizes["none"] > sizes["gzip:1"] >= sizes["gzip:9"]


def _deflate_levels(archive: bytes) -> set[int]:
    """zlib's FLEVEL (0: levels 0-1, 1: 2-5, 2: 6, 3: 7-9) of every compressed data block of a custom-format
    archive. Each block's first chunk is a zlib stream right after its length (pg_dump's int: a sign byte and
    4 little-endian bytes); a candidate counts only if that chunk really inflates."""
    levels = set()
    for match in re.finditer(rb"\x78[\x01\x5e\x9c\xda]", archive):
        start = match.start()
        if start < 5 or archive[start - 5] != 0:
            continue
        length = int.from_bytes(archive[start - 4 : start], "little")
        if not 2 < length <= len(archive) - start:
            continue
        try:
            inflated = zlib.decompressobj().decompress(archive[start : start + length])
        except zlib.error:
            continue
        if inflated:
            levels.add(archive[start + 1] >> 6)
    return levels


@pytest.mark.parametrize("server", ["machine", "18"])
def test_a_backup_with_nothing_configured_is_gzip_level_1_and_restores_by_hand(server, request, clean_env, tmp_path):
    """The default compression on each server's own pg_dump (the machine's, and 18), then README's "Restoring by
    hand" commands: sha256sum against the manifest, createdb, pg_restore --no-owner --no-acl --exit-on-error."""
    admin_url = request.getfixturevalue("pg_admin_url" if server == "machine" else "pg18_admin_url")
    url = request.getfixturevalue("make_database" if server == "machine" else "make_pg18_database")(prefix="bpdefault")
    target = PostgresTarget.from_url(url)
    storage = LocalStorage(tmp_path / "backups")
    catalog = _catalog(storage, url)
    manifests = {}
    for second, env in enumerate(({}, {"BACKUP_COMPRESSION": "gzip"})):  # nothing set; pg_dump's own default
        options = load_settings({"DATABASE_URL": url, **env}).databases[0].dump_options()
        backup_id = BackupId(created_at=datetime(2026, 1, 13, 6, 0, second, tzinfo=UTC), type="daily")
        manifests[second] = take_backup(target, catalog, backup_id, options=options, log=lambda _: None).manifest
    manifest, control = manifests[0], manifests[1]
    assert manifest.compression == "gzip:1" and control.compression == "gzip"
    dump = tmp_path / "backups" / manifest.key
    archive = dump.read_bytes()
    # Every data block is deflated at level 1; pg_dump's own default (6) is told apart by the same check.
    assert _deflate_levels(archive) == {0}
    assert _deflate_levels((tmp_path / "backups" / control.key).read_bytes()) == {2}
    assert manifest.size_bytes > control.size_bytes

    # By hand: a pg_restore at least as new as the manifest's pg_dump_version, of the server's major if any.
    major = server_major(admin_url)
    client = ClientTools.locate().for_archive(manifest.pg_dump_version, manifest.compression, server_major=major)
    assert client.major >= int(manifest.pg_dump_version.split(".")[0])
    header = subprocess.run([client.path("pg_restore"), "--list", str(dump)], capture_output=True, text=True)
    assert header.returncode == 0, header.stderr
    # pg_restore 16 and newer name the method (the level is not in the header); older ones print the level.
    wanted = "gzip" if int(manifest.pg_dump_version.split(".")[0]) >= 16 else "1"
    assert re.search(rf"^;\s+Compression: {wanted}$", header.stdout, re.M), header.stdout
    assert hashlib.sha256(archive).hexdigest() == manifest.sha256  # sha256sum FILE
    host, port, user = target.params["host"], target.params.get("port", "5432"), target.params["user"]
    restored_db = f"{target.dbname}_restored"
    connection = ["-h", host, "-p", port, "-U", user]
    try:
        subprocess.run([client.path("createdb"), *connection, restored_db], check=True, capture_output=True)
        if client.restores_into(major):
            restore = subprocess.run(
                [client.path("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", *connection,
                 "-d", restored_db, str(dump)],
                capture_output=True, text=True,
            )  # fmt: skip
        else:  # README: into a server before 17 with pg_restore 17+, its SQL through psql
            restore = subprocess.run(
                f"{client.path('pg_restore')} --no-owner --no-acl -f - {dump} | grep -vx 'SET transaction_timeout = 0;'"
                f" | {client.path('psql')} -v ON_ERROR_STOP=1 -q -h {host} -p {port} -U {user} -d {restored_db}",
                shell=True, capture_output=True, text=True,
            )  # fmt: skip
        assert restore.returncode == 0, restore.stderr
        restored_url = admin_url.rsplit("/", 1)[0] + "/" + restored_db
        assert row_counts(restored_url) == SEED_COUNTS == manifest.tables
        assert _content_digest(restored_url) == _content_digest(url)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{restored_db}" WITH (FORCE)')


def test_dump_options_set_in_the_databases_file_reach_pg_dump(seeded_db, tmp_path):
    config_file = tmp_path / "backups.yaml"
    config_file.write_text(
        "databases:\n  - key: app\n    url_env: APP_DATABASE_URL\n"
        "    dump_format: directory\n    dump_jobs: 2\n    compression: gzip:5\n"
    )
    settings = load_settings({"BACKUP_CONFIG_FILE": str(config_file), "APP_DATABASE_URL": seeded_db})
    catalog = _catalog(LocalStorage(tmp_path / "backups"), seeded_db)
    options = settings.database("app").dump_options()
    backup_id = BackupId.new("manual")
    target = PostgresTarget.from_url(seeded_db)
    manifest = take_backup(target, catalog, backup_id, options=options, log=lambda _: None).manifest
    assert (manifest.format, manifest.dump_jobs, manifest.compression) == ("directory", 2, "gzip:5")
    assert manifest.tables == SEED_COUNTS


def test_zstd_is_refused_clearly_by_a_pg_dump_without_it_and_nothing_is_stored(seeded_db, tmp_path):
    storage = LocalStorage(tmp_path / "backups")
    catalog = _catalog(storage, seeded_db)
    options = DumpOptions(compression="zstd:3")
    backup_id = BackupId.new("manual")
    client = _client_for(seeded_db)
    if client.supports_compression("zstd"):  # a client built with zstd really compresses with it
        manifest = take_backup(PostgresTarget.from_url(seeded_db), catalog, backup_id, options=options).manifest
        assert manifest.compression == "zstd:3"
        return
    with pytest.raises(ConfigurationError) as refused:
        take_backup(PostgresTarget.from_url(seeded_db), catalog, backup_id, options=options, log=lambda _: None)
    message = str(refused.value)
    assert "zstd:3" in message and "gzip:N" in message and "Nothing was dumped" in message
    if client.major < 16:
        assert "pg_dump 16 or newer" in message and f"is {client.version}" in message
    else:  # the bundled client is built with gzip only
        assert f"pg_dump {client.describe()} was built without it" in message
    assert list(storage.list("db-backups/")) == []


def test_directory_format_backs_up_in_parallel_verifies_and_restores(s3_env, pg_admin_url, make_database):
    # Through the job users run: settings from the environment, dump, upload, verification in one run.
    s3_env_extra = {"BACKUP_DUMP_FORMAT": "directory", "BACKUP_DUMP_JOBS": "2", "BACKUP_COMPRESSION": "gzip:5"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in s3_env_extra.items():
            patch.setenv(key, value)
        result, backup_id = run_backup(dg.DagsterInstance.get(), "manual")
        assert result.success, failure_message(result)
        settings = load_settings()

    storage = open_storage(settings.storage)
    assert isinstance(storage, S3Storage)
    catalog = _catalog(storage, s3_env["DATABASE_URL"])
    name = BackupName(catalog.name_prefix, BackupId.parse(backup_id))
    manifest = Manifest.from_json(storage.read_bytes(name.manifest_key("db-backups")))
    stored = storage.read_bytes(manifest.key)
    assert (manifest.format, manifest.dump_jobs, manifest.compression) == ("directory", 2, "gzip:5")
    assert manifest.sha256 == hashlib.sha256(stored).hexdigest() and manifest.size_bytes == len(stored)
    assert manifest.tables == SEED_COUNTS
    assert storage.head(name.verified_key("db-backups")) is not None  # the run's verification passed

    target_db = make_database(seed_sql=None).rsplit("/", 1)[1] + "_restored"
    try:
        outcome = restore_to_database(
            catalog, name, PostgresTarget.from_url(pg_admin_url), target_db, jobs=2, log=lambda _: None
        )
        assert outcome.tables == SEED_COUNTS
        restored_url = pg_admin_url.rsplit("/", 1)[0] + "/" + target_db
        assert _content_digest(restored_url) == _content_digest(s3_env["DATABASE_URL"])
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')


def test_a_dump_bigger_than_a_part_streams_to_s3_in_full_sized_parts(make_database, moto_server, s3_bucket, tmp_path):
    # 24 MiB of random bytes, not compressed: more than two 8 MiB parts.
    url = make_database(
        "CREATE TABLE blobs (id int PRIMARY KEY, data bytea);"
        "INSERT INTO blobs SELECT g, decode(string_agg(md5(g::text || ':' || i::text), ''), 'hex')"
        " FROM generate_series(1, 24) g, generate_series(1, 65536) i GROUP BY g;"
    )
    client = moto_server.client()
    catalog = _catalog(S3Storage(client, s3_bucket, moto_server.endpoint), url)
    manifest = take_backup(
        PostgresTarget.from_url(url),
        catalog,
        BackupId.new("manual"),
        options=DumpOptions(compression="none"),
        log=lambda _: None,
    ).manifest

    assert manifest.size_bytes > 24 * MiB
    # Parts are never bigger than the part size, so this count means every part but the last is full
    # (a pipe's short reads used to end the upload as one PUT held in memory).
    parts = math.ceil(manifest.size_bytes / part_size_for(manifest.database_size_bytes))
    assert parts >= 3
    head = client.head_object(Bucket=s3_bucket, Key=manifest.key, PartNumber=1)
    assert head["PartsCount"] == parts
    assert head["ContentLength"] == part_size_for(manifest.database_size_bytes) >= S3_MIN_PART
    stored = client.get_object(Bucket=s3_bucket, Key=manifest.key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == manifest.sha256 and len(stored) == manifest.size_bytes
    assert manifest.tables == {"public.blobs": 24}
