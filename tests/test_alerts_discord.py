"""The Discord client and its configuration, against the loopback stand-in: webhook and bot modes, the
2,000-character limit, rate limits, clear configuration errors, and redaction of anything secret."""

import logging
import time

import pytest

from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.notify.discord import MAX_MESSAGE_CHARS, DiscordChannel
from backup_pipeline.core.notify.redact import Redactor
from tests.support.discord_stub import WEBHOOK_PATH, discord_stub  # noqa: F401


def _client(env: dict) -> DiscordChannel:
    return DiscordChannel(load_settings(env).discord, environ=env)


def test_webhook_mode_posts_to_the_webhook_and_keeps_within_2000_characters(discord_stub):
    env = {"DISCORD_WEBHOOK_URL": discord_stub.webhook_url}
    long_text = "backup failed: " + "x" * 5000

    assert _client(env).post(long_text) is True

    [request] = discord_stub.requests
    assert request.path == f"{WEBHOOK_PATH}?wait=true"
    assert "Authorization" not in request.headers
    [message] = discord_stub.messages
    assert len(message) == MAX_MESSAGE_CHARS and message.startswith("backup failed: xxx") and message.endswith("…")


def test_bot_mode_posts_to_the_channel_with_the_token(discord_stub):
    env = {
        "DISCORD_BOT_TOKEN": "MTIz.bot.token-value",
        "DISCORD_BACKUP_CHANNEL_ID": "42",
        "DISCORD_API_BASE_URL": discord_stub.url + "/",
    }

    assert _client(env).post("hello") is True

    [request] = discord_stub.requests
    assert request.path == "/channels/42/messages"
    assert request.headers["Authorization"] == "Bot MTIz.bot.token-value"
    assert request.body == {"content": "hello", "allowed_mentions": {"parse": []}}


def test_rate_limits_are_honoured_a_bounded_number_of_times(discord_stub, caplog):
    env = {"DISCORD_WEBHOOK_URL": discord_stub.webhook_url}
    discord_stub.set_responses([(429, 0.2), (429, 0.2), (429, 0.2), (429, 0.2)])
    caplog.set_level(logging.INFO, logger="backup_pipeline.notify")

    started = time.monotonic()
    assert _client(env).post("hello") is False
    elapsed = time.monotonic() - started

    assert len(discord_stub.requests) == 3 and discord_stub.messages == []
    assert elapsed >= 0.4  # it did wait retry_after between attempts
    assert "HTTP 429" in caplog.text and "after 3 attempt(s)" in caplog.text
    assert discord_stub.webhook_url not in caplog.text and "stub-webhook-token" not in caplog.text


@pytest.mark.parametrize(
    "env, complaint",
    [
        ({"DISCORD_BOT_TOKEN": "t0ken-value"}, "DISCORD_BOT_TOKEN is set but DISCORD_BACKUP_CHANNEL_ID is not"),
        ({"DISCORD_BACKUP_CHANNEL_ID": "42"}, "DISCORD_BACKUP_CHANNEL_ID is set but DISCORD_BOT_TOKEN is not"),
        ({"DISCORD_BOT_TOKEN": "t0ken-value", "DISCORD_BACKUP_CHANNEL_ID": "#alerts"}, "is not a channel id"),
        ({"DISCORD_WEBHOOK_URL": "discord.com/api/webhooks/1/secret-part"}, "DISCORD_WEBHOOK_URL is not a URL"),
        ({"DISCORD_WEBHOOK_URL": "https://x.test/h", "DISCORD_API_BASE_URL": "discord.com"}, "DISCORD_API_BASE_URL"),
        ({"BACKUP_DISCORD_SUCCESS_NOTICES": "sometimes"}, "BACKUP_DISCORD_SUCCESS_NOTICES must be true or false"),
    ],
)
def test_half_done_discord_configuration_is_named_clearly(env, complaint):
    with pytest.raises(ConfigurationError, match=complaint) as raised:
        load_settings(env)
    assert "t0ken-value" not in str(raised.value) and "secret-part" not in str(raised.value)


def test_settings_hold_variable_names_never_secret_values():
    env = {
        "DISCORD_WEBHOOK_URL": "https://discord.test/api/webhooks/1/very-secret",
        "DISCORD_BOT_TOKEN": "tok3n-xyz",
        "DISCORD_BACKUP_CHANNEL_ID": "42",
        "BACKUP_DISCORD_SUCCESS_NOTICES": "no",
    }
    discord = load_settings(env).discord
    assert discord.configured and discord.success_notices is False
    assert "very-secret" not in repr(discord) and "tok3n-xyz" not in repr(discord)
    assert not load_settings({}).discord.configured


def test_redaction_masks_known_secrets_and_credential_shapes():
    env = {
        "DATABASE_URL": "postgresql://app:p%40ss-w0rd@db.internal:5432/app",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "DISCORD_BOT_TOKEN": "MTAx.bot-token.abcdef",
        "DISCORD_BACKUP_CHANNEL_ID": "42",
    }
    redact = Redactor.from_settings(load_settings(env), env)
    text = redact(
        "psql: postgresql://app:p%40ss-w0rd@db.internal:5432/app failed (password p@ss-w0rd); "
        "key wJalrXUtnFEMI/K7MDENG; Bot MTAx.bot-token.abcdef; other://u:hunter2@h/x; "
        "host=db password=s3cr3t; https://discord.com/api/webhooks/123/AbC-dEf"
    )
    secrets = ("p%40ss-w0rd", "p@ss-w0rd", "wJalrXUtnFEMI", "MTAx.bot-token.abcdef", "hunter2", "s3cr3t", "AbC-dEf")
    for secret in secrets:
        assert secret not in text, secret
    assert "postgresql://app:***@db.internal:5432/app" in text and "/webhooks/123/***" in text
