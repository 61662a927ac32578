"""Client-side encryption: an encrypted backup is stored as ciphertext, verifies and restores to the same rows,
and a wrong, missing or malformed key, or a damaged object, is refused with a message that says what to do."""

import base64
import hashlib
import io
import json
import os

import dagster as dg
import psycopg
import pytest

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.encryption import (
    MAGIC,
    DecryptingReader,
    EncryptingReader,
    EncryptionKey,
    load_key,
    parse_key,
)
from backup_pipeline.core.errors import ConfigurationError, VerificationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupId
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import table_row_counts
from backup_pipeline.core.storage import open_storage
from tests.support.hardening import (
    bucket_state,
    clean_environment,
    create_database,
    database_url,
    drop_databases,
    s3_backup_env,
)
from tests.support.pipeline import failure_message, load_defs, run_backup, run_restore
from tests.support.seed import SEED_COUNTS

KEY = base64.b64encode(hashlib.sha256(b"encryption test key").digest()).decode()
OTHER_KEY = hashlib.sha256(b"another key").hexdigest()


def _read_all(reader, size=7000) -> bytes:
    parts = []
    while chunk := reader.read(size):
        parts.append(chunk)
    return b"".join(parts)


def _encrypt(data: bytes, key: EncryptionKey, chunk_bytes: int = 1024) -> bytes:
    return _read_all(EncryptingReader(io.BytesIO(data), key, chunk_bytes=chunk_bytes))


# ----------------------------------------------------------------------------------------- the stream format

KEY_OBJ = parse_key(KEY, "BACKUP_ENCRYPTION_KEY")


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 5000])
def test_stream_round_trips_at_every_chunk_boundary(size):
    data = os.urandom(size)
    sealed = _encrypt(data, KEY_OBJ)
    assert sealed.startswith(MAGIC)
    assert len(sealed) == 28 + size + 16 * (size // 1024 + 1)  # header, data, one tag per chunk (the last may be empty)
    assert _read_all(DecryptingReader(io.BytesIO(sealed), KEY_OBJ, "app_manual_20260113_150000")) == data


def _chunks_swapped(sealed: bytes) -> bytes:
    header, body = sealed[:28], sealed[28:]
    step = 1024 + 16
    return header + body[step : 2 * step] + body[:step] + body[2 * step :]


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s[:-1],  # truncated inside the final chunk
        lambda s: s[: 28 + 2 * (1024 + 16)],  # truncated exactly at a chunk boundary
        lambda s: s + b"\x00",  # bytes appended after the final chunk
        lambda s: s[:100] + bytes([s[100] ^ 1]) + s[101:],  # one bit flipped
        _chunks_swapped,  # chunks reordered
        lambda s: s[:20] + bytes([s[20] ^ 1]) + s[21:],  # header (salt) altered
        lambda s: s[:10],  # not even a header
    ],
    ids=["truncated", "cut-at-boundary", "appended", "bit-flip", "reordered", "header", "stub"],
)
def test_damaged_ciphertext_never_decrypts_silently(damage):
    sealed = _encrypt(os.urandom(5000), KEY_OBJ)
    with pytest.raises(VerificationError, match="app_manual_20260113_150000 is corrupted: .*restore another backup"):
        _read_all(DecryptingReader(io.BytesIO(damage(sealed)), KEY_OBJ, "app_manual_20260113_150000"))


def test_keys_are_read_from_base64_hex_or_a_file_and_never_shown(tmp_path):
    raw = hashlib.sha256(b"encryption test key").digest()
    assert parse_key(KEY, "X").secret == raw
    assert parse_key(raw.hex(), "X").secret == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode().rstrip("="), "X").secret == raw
    key_file = tmp_path / "backup.key"
    key_file.write_text(KEY + "\n")
    from_file = load_key(None, str(key_file))
    assert from_file.key_id == KEY_OBJ.key_id and len(from_file.key_id) == 16
    assert KEY not in repr(from_file) and raw.hex() not in repr(from_file)


# --------------------------------------------------------------------------------------- backups, end to end


@pytest.fixture(scope="module")
def encrypted(pg_admin_url, moto_server, tmp_path_factory):
    """A seeded database with one plain and one encrypted backup in a fresh bucket."""
    root = tmp_path_factory.mktemp("encryption")
    dbname = create_database(pg_admin_url, "bpenc")
    bucket = f"bp-enc-{os.urandom(4).hex()}"
    moto_server.client().create_bucket(Bucket=bucket)
    env = s3_backup_env(pg_admin_url, dbname, moto_server, bucket, root)
    try:
        with clean_environment(env) as patch:
            # An older, unencrypted backup (taken directly: its Dagster run is not what is tested here).
            plain_id = BackupId.parse("manual_20260101_000000")
            catalog = BackupCatalog(open_storage(load_settings().storage), "db-backups", dbname)
            take_backup(PostgresTarget.from_url(env["DATABASE_URL"]), catalog, plain_id, log=lambda _: None)
            dg.DagsterInstance.get().add_dynamic_partitions("backups", [str(plain_id)])
            patch.setenv("BACKUP_ENCRYPTION_KEY", KEY)
            result, backup_id = run_backup(dg.DagsterInstance.get(), "manual")
            assert result.success, failure_message(result)  # including its verification: decrypted and restored
            patch.delenv("BACKUP_ENCRYPTION_KEY")
            yield {
                "dbname": dbname,
                "bucket": bucket,
                "id": backup_id,
                "plain_id": str(plain_id),
                "result": result,
                "client": moto_server.client(),
                "admin": pg_admin_url,
            }
    finally:
        drop_databases(pg_admin_url, [dbname])


def _restore(backup_name: str, target: str, jobs: int = 1):
    return run_restore(dg.DagsterInstance.get(), backup_name=backup_name, target_db=target, jobs=jobs)


def _verify(backup_id: str):
    return (
        load_defs()
        .resolve_job_def("verify_job")
        .execute_in_process(instance=dg.DagsterInstance.get(), partition_key=backup_id, raise_on_error=False)
    )


def test_encrypted_backup_is_ciphertext_with_a_manifest_that_names_the_key_but_holds_none(encrypted):
    client, bucket = encrypted["client"], encrypted["bucket"]
    key = f"db-backups/{encrypted['dbname']}_{encrypted['id']}.dump"
    stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    manifest_bytes = client.get_object(Bucket=bucket, Key=key + ".json")["Body"].read()
    manifest = Manifest.from_json(manifest_bytes)

    assert stored.startswith(MAGIC) and b"PGDMP" not in stored[:64]
    assert manifest.sha256 == hashlib.sha256(stored).hexdigest() and manifest.size_bytes == len(stored)
    assert manifest.encryption == {
        "algorithm": "AES-256-GCM",
        "format": "backup_pipeline-chunked-v1",
        "chunk_bytes": 1024 * 1024,
        "key_id": KEY_OBJ.key_id,
    }
    raw = base64.b64decode(KEY)
    for form in (KEY, raw.hex(), KEY.rstrip("=")):
        assert form.encode() not in manifest_bytes and form.encode() not in stored
    assert raw not in stored
    assert client.head_object(Bucket=bucket, Key=key)["Metadata"] == {}
    plain = _read_all(DecryptingReader(io.BytesIO(stored), KEY_OBJ, "x"), 1 << 20)
    assert plain.startswith(b"PGDMP") and manifest.tables == SEED_COUNTS
    assert client.head_object(Bucket=bucket, Key=key + ".verified.json")  # verification decrypted and matched


@pytest.mark.parametrize("jobs", [1, 2], ids=["streamed", "parallel-staged"])
def test_encrypted_backup_restores_to_the_same_rows(encrypted, jobs, monkeypatch):
    target = f"bp_enc_restored_{jobs}_{os.urandom(3).hex()}"
    name = f"{encrypted['dbname']}_{encrypted['id']}"
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", KEY)
    try:
        result = _restore(name, target, jobs)
        assert result.success, failure_message(result)
        with psycopg.connect(database_url(encrypted["admin"], target)) as conn:
            assert table_row_counts(conn) == SEED_COUNTS
    finally:
        drop_databases(encrypted["admin"], [target])


@pytest.mark.parametrize(
    "key_env, expected",
    [
        ({}, "is encrypted (AES-256-GCM, key id {key_id}): set BACKUP_ENCRYPTION_KEY or BACKUP_ENCRYPTION_KEY_FILE"),
        ({"BACKUP_ENCRYPTION_KEY": OTHER_KEY}, "was encrypted with key id {key_id}, but the configured key"),
    ],
    ids=["missing key", "wrong key"],
)
def test_missing_or_wrong_key_is_refused_before_anything_is_restored(
    encrypted, key_env, expected, pg_admin_url, monkeypatch
):
    name = f"{encrypted['dbname']}_{encrypted['id']}"
    state = bucket_state(encrypted["client"], encrypted["bucket"])
    for variable, value in key_env.items():
        monkeypatch.setenv(variable, value)
    verify = _verify(encrypted["id"])
    restore = _restore(name, "bp_enc_never_created")
    for result in (verify, restore):
        assert not result.success
        message = failure_message(result)
        assert expected.format(key_id=KEY_OBJ.key_id) in message and name in message
        assert OTHER_KEY not in message and KEY not in message
    assert bucket_state(encrypted["client"], encrypted["bucket"]) == state
    with psycopg.connect(pg_admin_url) as conn:
        assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'bp_enc_never_created'").fetchone()


def test_key_from_a_file_decrypts_and_plain_backups_still_restore_with_a_key_set(encrypted, tmp_path, monkeypatch):
    key_file = tmp_path / "backup.key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY_FILE", str(key_file))
    for backup_id in (encrypted["id"], encrypted["plain_id"]):  # an older unencrypted backup needs no key
        result = _verify(backup_id)
        assert result.success, failure_message(result)


def test_damaged_encrypted_object_is_refused(encrypted, monkeypatch):
    client, bucket = encrypted["client"], encrypted["bucket"]
    source = f"db-backups/{encrypted['dbname']}_{encrypted['id']}.dump"
    damaged_id = "manual_20260102_000000"
    key = f"db-backups/{encrypted['dbname']}_{damaged_id}.dump"
    body = bytearray(client.get_object(Bucket=bucket, Key=source)["Body"].read())
    body[len(body) // 2] ^= 0x01
    manifest = json.loads(client.get_object(Bucket=bucket, Key=source + ".json")["Body"].read())
    manifest.update(name=f"{encrypted['dbname']}_{damaged_id}", backup_id=damaged_id, key=key)
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    client.put_object(Bucket=bucket, Key=key + ".json", Body=json.dumps(manifest).encode())
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", KEY)
    dg.DagsterInstance.get().add_dynamic_partitions("backups", [damaged_id])
    verify = _verify(damaged_id)
    assert not verify.success
    assert f"{encrypted['dbname']}_{damaged_id} is corrupted" in failure_message(verify)
    assert "failed authentication" in failure_message(verify) or "sha256" in failure_message(verify)
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": key + ".json"}]})


def test_malformed_key_is_explained_without_echoing_it():
    with pytest.raises(ConfigurationError, match="BACKUP_ENCRYPTION_KEY is not a usable encryption key") as error:
        load_key("correct horse battery staple", None)
    assert "horse" not in str(error.value) and "openssl rand -base64 32" in str(error.value)


def test_an_encrypted_backup_can_be_decrypted_by_hand_for_a_manual_restore(encrypted, tmp_path):
    """The README's runbook: download, decrypt with the key from the environment, pg_restore --list reads it."""
    import subprocess
    import sys

    from tests.support.hardening import real_pg_bin

    body = (
        encrypted["client"]
        .get_object(Bucket=encrypted["bucket"], Key=f"db-backups/{encrypted['dbname']}_{encrypted['id']}.dump")["Body"]
        .read()
    )
    (tmp_path / "backup.dump").write_bytes(body)
    key_file = tmp_path / "backup.key"
    key_file.write_text(KEY)
    env = {"PATH": os.environ["PATH"], "BACKUP_ENCRYPTION_KEY_FILE": str(key_file)}
    with open(tmp_path / "backup.dump", "rb") as source, open(tmp_path / "plain.dump", "wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "backup_pipeline.core.encryption", "decrypt"],
            stdin=source,
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    listing = subprocess.run(
        [str(real_pg_bin() / "pg_restore"), "--list", str(tmp_path / "plain.dump")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE DATA app users" in listing
    wrong = subprocess.run(
        [sys.executable, "-m", "backup_pipeline.core.encryption", "decrypt"],
        input=body,
        capture_output=True,
        env={"PATH": os.environ["PATH"], "BACKUP_ENCRYPTION_KEY": OTHER_KEY},
    )
    assert wrong.returncode == 1
    assert b"the input cannot be decrypted with the key from BACKUP_ENCRYPTION_KEY (key id " in wrong.stderr
    assert OTHER_KEY.encode() not in wrong.stderr
