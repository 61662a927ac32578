"""An environment where every secret is in play: a database role with a password, an S3 secret, a bot token.

The local server trusts every connection, so the role's password is never checked, but it still travels
through DATABASE_URL and the code exactly as a real one would. Import `password_role` and `alert_env` into a
test module to use them (alongside `discord_stub`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from .discord_stub import DiscordStub

CHANNEL_ID = "123456789012345678"
WEBSERVER_URL = "http://dagster.example.test:3000"


@dataclass
class AlertEnv:
    values: dict[str, str]
    secrets: dict[str, str]
    stub: DiscordStub

    def leaked(self, text: str) -> list[str]:
        """Which secrets appear in `text` (none, one hopes)."""
        return [name for name, value in self.secrets.items() if value in text]


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
def password_role(pg_admin_url, seeded_db):
    """(URL of seeded_db as a role with a password, the password); the role is dropped afterwards."""
    role = f"bp_alerts_{secrets.token_hex(4)}"
    password = f"pw-{secrets.token_hex(10)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    try:
        yield _with_credentials(seeded_db, role, password), password
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            # Scratch databases a failed verification may have left behind belong to the role.
            owned = conn.execute(
                "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = %s", (role,)
            ).fetchall()
            for (name,) in owned:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def alert_env(s3_env, password_role, discord_stub, clean_env) -> AlertEnv:
    """s3_env, with DATABASE_URL carrying a password, a distinctive S3 secret and Discord (bot mode) at the stub."""
    url, password = password_role
    found = {
        "database password": password,
        "S3 secret": f"s3-secret-{secrets.token_hex(12)}",
        "bot token": f"MTAx.bot-token.{secrets.token_hex(16)}",
    }
    values = {
        **s3_env,
        "DATABASE_URL": url,
        "AWS_SECRET_ACCESS_KEY": found["S3 secret"],
        "DISCORD_BOT_TOKEN": found["bot token"],
        "DISCORD_BACKUP_CHANNEL_ID": CHANNEL_ID,
        "DISCORD_API_BASE_URL": discord_stub.url,
        "DAGSTER_WEBSERVER_URL": WEBSERVER_URL,
    }
    for key, value in values.items():
        clean_env.setenv(key, value)
    return AlertEnv(values=values, secrets=found, stub=discord_stub)
