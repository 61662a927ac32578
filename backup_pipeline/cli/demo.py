"""`backup-db demo`: the whole flow in a minute, with nothing installed or configured but this package.

A throwaway PostgreSQL 18 (the bundled binaries) with a sample database, clearly labelled as a demo; then
the real verbs, each a Dagster run recorded in DAGSTER_HOME: backup (which verifies), list, verify again,
restore into a new database. The server is stopped and removed at the end; the demo's backups stay in their
own folder. Nothing of the user's configuration is used: no DATABASE_URL, no bucket, no alert channel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

DEMO_DATABASE = "demo_shop"
RESTORED_DATABASE = "demo_shop_restored"
DEMO_LABEL = "DEMO: throwaway sample data made by backup-db demo"
# Our settings that must not reach the demo's runs: it never touches the user's database, bucket or channel.
_OUR_VARIABLES = re.compile(r"^(DATABASE_URL|BACKUP_.*|AWS_.*|DO_SPACES_.*|DISCORD_.*|DAGSTER_WEBSERVER_URL)$")
DEMO_SQL = f"""
COMMENT ON DATABASE {DEMO_DATABASE} IS '{DEMO_LABEL}';
CREATE SCHEMA shop;
CREATE TABLE shop.customers (
    id uuid PRIMARY KEY DEFAULT uuidv7(), email text NOT NULL UNIQUE, country char(2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO shop.customers (email, country)
SELECT 'customer' || g || '@example.com', (ARRAY['DE', 'FR', 'US', 'JP', 'BR'])[1 + g % 5]
FROM generate_series(1, 2000) g;
CREATE TABLE shop.orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id uuid NOT NULL REFERENCES shop.customers,
    price numeric(10, 2) NOT NULL, quantity int NOT NULL,
    total numeric GENERATED ALWAYS AS (price * quantity) VIRTUAL, note text
);
INSERT INTO shop.orders (customer_id, price, quantity, note)
SELECT c.id, (g % 97) + 0.99, 1 + g % 5, CASE WHEN g % 3 = 0 THEN 'gift wrap' END
FROM generate_series(1, 6000) g JOIN (SELECT id, row_number() OVER () AS n FROM shop.customers) c
  ON c.n = 1 + g % 2000;
"""


def run_demo(args) -> int:
    from backup_pipeline.cli.home import dagster_home_path
    from backup_pipeline.core.postgres.throwaway import ThrowawayServer

    backups = Path(args.backups_dir).resolve()
    print(f"{DEMO_LABEL}.")
    print("Starting a throwaway PostgreSQL 18 from the bundled binaries (nothing of yours is touched)...", flush=True)
    with ThrowawayServer(label="demo") as server:
        _create_sample_database(server)
        env = {k: v for k, v in os.environ.items() if not _OUR_VARIABLES.match(k)}
        env.update({"DATABASE_URL": server.url_for(DEMO_DATABASE), "BACKUP_LOCAL_DIR": str(backups)})
        print(f"Sample database {DEMO_DATABASE} on {server.url_for(DEMO_DATABASE)}: 2000 customers, 6000 orders\n")

        _step("1/4", "backup-db backup: pg_dump 18 into the local folder, then a restore into a scratch database")
        taken = _verb(env, "backup", "--label", "demo", "--json", capture=True)
        name = json.loads(taken)["name"]
        print(f"stored and verified {name} in {backups}")
        _step("2/4", "backup-db list")
        _verb(env, "list")
        _step("3/4", "backup-db verify: restore it into a scratch database again and compare every table's rows")
        _verb(env, "verify", name)
        _step("4/4", f"backup-db restore into a new database, {RESTORED_DATABASE}")
        _verb(env, "restore", name, "--target-db", RESTORED_DATABASE, "--confirm", "RESTORE")
        print("\nStopping and removing the demo server.")
    print(
        f"\nDone: backed up, verified and restored. The demo's backups stay in {backups} and its runs in the "
        f"Dagster instance at {dagster_home_path()}. For your own database: set "
        "DATABASE_URL (see Configuration in README.md) and run `backup-db backup`."
    )
    return 0


def _create_sample_database(server) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DATABASE)))
    with psycopg.connect(server.url_for(DEMO_DATABASE), autocommit=True) as conn:
        conn.execute(DEMO_SQL)


def _step(number: str, text: str) -> None:
    print(f"\n[{number}] {text}", flush=True)


def _verb(env: dict[str, str], *args: str, capture: bool = False) -> str:
    """Runs one `backup-db` verb as users do; its progress shows as it goes. A failure stops the demo."""
    from backup_pipeline.core.errors import BackupError

    result = subprocess.run(
        [sys.executable, "-m", "backup_pipeline.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"the demo's `backup-db {' '.join(args)}` failed (exit {result.returncode}), as shown above")
    return result.stdout or ""
