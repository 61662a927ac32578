"""The checked value types of the configuration, shared by the environment (config.py, config_loading.py) and
the databases file (config_file.py).

Each type is a pydantic `Annotated` type whose validator turns what a user wrote (always text in the
environment; text, numbers or null in YAML) into the value the pipeline uses. A bad value raises ValueError
with the rest of the sentence after the setting's name ("must be a whole number from 1 to 36500, got 0"):
the loader puts the variable's or the file field's name in front. CompleteMessage carries a sentence that
already names what is wrong (messages shared with the command line, cross-field rules).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

from pydantic import AfterValidator, BeforeValidator

from backup_pipeline.core.dump_options import Compression, check_format
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.names import check_name_prefix

S3_CHECKSUM_MODES = ("when_required", "when_supported")
# Where verification restores: a throwaway server on the worker, the database's own server, or
# BACKUP_VERIFY_DATABASE_URL's.
VERIFY_ON_CHOICES = ("local", "source", "url")
# Heartbeat ping conventions (core/notify/heartbeat.py).
HEARTBEAT_STYLE_CHOICES = ("healthchecks", "uptime-kuma", "cronitor")
_APPRISE_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.IGNORECASE)
# In place of a URL, the variable holding it (`${SLACK_URL}`): keeps tokens out of the databases file.
NOTIFY_URL_VARIABLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DATABASE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,40}$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WEBHOOK = re.compile(r"^https?://[^/\s]+/\S*$")


# Validation contexts: rules across settings name them as the environment or the databases file does.
IN_ENVIRONMENT = {"source": "environment"}
IN_FILE = {"source": "file"}


class CompleteMessage(ValueError):
    """A validation message that is a whole sentence already: shown as it is, without a name in front."""


def whole_number(minimum: int, maximum: int):
    """A whole number within bounds, from text or YAML (a setting's `bounds` in core/settings.py)."""
    kind = f"a whole number from {minimum} to {maximum}"

    def check(value: object) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError(f"must be {kind}, got '{value[:40]}'") from None
        elif isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be {kind}, got '{str(value)[:40]}'")
        return _within(value, minimum, maximum, kind)

    return BeforeValidator(check)


def number(minimum: float, maximum: float):
    """A number within bounds, from text or YAML."""
    kind = f"a number from {minimum:g} to {maximum:g}"

    def check(value: object) -> float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ValueError(f"must be {kind}, got '{value[:40]}'") from None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be {kind}, got '{str(value)[:40]}'")
        return _within(float(value), minimum, maximum, kind)

    return BeforeValidator(check)


def _within(value, minimum, maximum, kind: str):
    if (isinstance(value, float) and not math.isfinite(value)) or not minimum <= value <= maximum:
        raise ValueError(f"must be {kind}, got {str(value)[:40]}")
    return value


def _text(value: object) -> str:
    # YAML turns `name_prefix: 2024` into a number and an empty value into null: neither is a name.
    if value is None:
        raise ValueError("must be text")
    if not isinstance(value, str):
        raise ValueError(f"must be text, got '{value}'")
    if not value:
        raise ValueError("must not be empty")
    return value


def _matching(pattern: re.Pattern, message: str):
    """Text matching `pattern`; else `message`, formatted with the value as {value}."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(message.format(value=value[:40]))
        return value

    return AfterValidator(check)


def _web_url(hint: str, echo: bool = True):
    def check(value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"'{value}' is not a URL: {hint}" if echo else f"is not a URL: {hint}")
        return value.rstrip("/")

    return AfterValidator(check)


def _storage_prefix(value: str) -> str:
    prefix = value.strip("/")
    if ".." in prefix.split("/") or "\x00" in prefix or "\\" in prefix:
        raise ValueError(f"'{value}' must be a plain key prefix such as db-backups/app")
    return prefix


def _cron(value: str) -> str:
    # A shape check only: Dagster validates the expression fully when the schedule is built.
    fields = value.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*,/-]+", f) for f in fields):
        raise ValueError(f"'{value}' is not a cron expression: for example '0 6 * * *'")
    return value


def _name_prefix(value: str) -> str:
    try:
        return check_name_prefix(value)
    except ConfigurationError:
        raise ValueError(
            f"'{value}' is not usable in object names: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 63 characters"
        ) from None


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got '{value}'")


def _checksum_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode not in S3_CHECKSUM_MODES:
        raise ValueError(
            f"must be when_required (only the checksums an operation needs: for S3-compatible stores that reject "
            f"boto3's default headers) or when_supported (boto3's default), got '{value[:40]}'"
        )
    return mode


def _verify_on(value: str) -> str:
    choice = value.strip().lower()
    if choice not in VERIFY_ON_CHOICES:
        raise ValueError(
            f"must be local (a throwaway PostgreSQL on this machine, made for each verification), source (the "
            f"database's own server, which needs room for a full copy and CREATEDB there) or url (the server of "
            f"BACKUP_VERIFY_DATABASE_URL), got '{value[:40]}'"
        )
    return choice


def _key_file(value: str) -> str:
    if not Path(value).is_file():
        raise ValueError(
            f"'{value}' is not a file: point it at a file holding the key "
            "(create one with `openssl rand -base64 32 > backup.key`)"
        )
    return value


def _reusing(check, named: bool = False):
    """A validator from a check shared with the command line, which raises ConfigurationError. `named`: the
    check's message leaves out the setting's name, which the loader puts in front (a variable or a file field)."""

    def validate(value):
        try:
            return check(value)
        except ConfigurationError as exc:
            raise (ValueError if named else CompleteMessage)(str(exc)) from None

    return BeforeValidator(validate)


def _compression(value: object) -> str | None:
    if value is not None and not isinstance(value, str | int):
        raise ValueError(f"must be text such as gzip:1, got '{str(value)[:40]}'")
    compression = Compression.parse(None if value is None else str(value), where=None)
    return str(compression) if compression else None


Text = Annotated[str, BeforeValidator(_text)]
EnvName = Annotated[
    Text,
    _matching(
        _ENV_NAME,
        # Not echoed: a URL pasted here may carry a password.
        "must be the name of an environment variable (for example BILLING_DATABASE_URL) that holds "
        "the URL, never the URL itself",
    ),
]
DatabaseKey = Annotated[
    Text,
    _matching(
        _DATABASE_KEY,
        "'{value}' must start with a letter and hold only letters, digits and '_' (at most 41 characters); "
        "it names the Dagster assets and jobs of that database",
    ),
]
NamePrefix = Annotated[Text, AfterValidator(_name_prefix)]
StoragePrefix = Annotated[Text, AfterValidator(_storage_prefix)]
Cron = Annotated[Text, AfterValidator(_cron)]
S3Checksums = Annotated[str, BeforeValidator(lambda v: _checksum_mode(_text(v)))]
DumpFormat = Annotated[str, _reusing(lambda value: check_format(_text(value).strip().lower(), where=None), named=True)]
CompressionText = Annotated[str | None, _reusing(_compression, named=True)]
Bucket = Annotated[
    str, _matching(_BUCKET, "'{value}' is not a valid bucket name: 3 to 63 lowercase letters, digits, '.' or '-'")
]
Region = Annotated[
    str, _matching(_REGION, "'{value}' is not a region name: use its short form, for example fra1 or us-east-1")
]
EndpointUrl = Annotated[str, _web_url("use https://host[:port], for example https://fra1.digitaloceanspaces.com")]
WebserverUrl = Annotated[
    str,
    _web_url(
        "use the address of the Dagster UI, for example http://localhost:3000 (links to runs in messages start with it)"
    ),
]
DiscordApiUrl = Annotated[str, _web_url("use https://discord.com/api/v10 or your proxy's URL")]
# The webhook URL carries its token: its message names the variable, never echoes the value.
WebhookUrl = Annotated[
    str,
    _matching(
        _WEBHOOK,
        "is not a URL: copy it from the channel's Integrations > Webhooks "
        "(https://discord.com/api/webhooks/<id>/<token>)",
    ),
]
ChannelId = Annotated[
    str, _matching(re.compile(r"^\d+$"), "'{value}' is not a channel id: it is a number such as 1234567890123456789")
]
Flag = Annotated[bool, BeforeValidator(lambda v: v if isinstance(v, bool) else _flag(_text(v)))]
KeyFile = Annotated[str, AfterValidator(_key_file)]
VerifyOn = Annotated[str, BeforeValidator(lambda v: _verify_on(_text(v)))]


def _notify_urls(value: object) -> tuple[str, ...]:
    """apprise URLs: a list (the file), or text separated by commas or spaces (the environment). A URL carries
    its service's token, so a message names an item by its position, never by its value."""
    if value is None:
        return ()
    items = re.split(r"[\s,]+", value) if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a list of apprise URLs (slack://..., mailtos://..., json://...)")
    urls = tuple(str(item).strip() for item in items if str(item).strip())
    for position, url in enumerate(urls, start=1):
        if not (_APPRISE_URL.match(url) or NOTIFY_URL_VARIABLE.match(url)):
            raise ValueError(
                f"item {position} is not an apprise URL: each is scheme://... such as slack://TokenA/TokenB/TokenC "
                "or mailtos://user:password@example.com (https://github.com/caronc/apprise/wiki), or ${VARIABLE} "
                "naming the variable that holds it"
            )
    return urls


def _heartbeat_style(value: str) -> str:
    style = value.strip().lower()
    if style not in HEARTBEAT_STYLE_CHOICES:
        raise ValueError(f"must be one of {', '.join(HEARTBEAT_STYLE_CHOICES)}, got '{value[:40]}'")
    return style


NotifyUrls = Annotated[tuple[str, ...], BeforeValidator(_notify_urls)]
# A heartbeat URL's UUID or token is its credential: its message never echoes the value.
_PING_URL_HINT = "use the ping URL your monitor shows, such as https://hc-ping.com/<uuid>, or ${VARIABLE} holding it"
_ping_url_check = _web_url(_PING_URL_HINT, echo=False).func


def _ping_url(value: str) -> str:
    return value if NOTIFY_URL_VARIABLE.match(value) else _ping_url_check(value)


HeartbeatUrl = Annotated[str, AfterValidator(_ping_url)]
# The same check once a ${VARIABLE} was replaced by its value.
PlainHeartbeatUrl = Annotated[str, _web_url(_PING_URL_HINT, echo=False)]
HeartbeatStyle = Annotated[str, BeforeValidator(lambda v: _heartbeat_style(_text(v)))]
PushgatewayUrl = Annotated[str, _web_url("use the Pushgateway's address, such as http://pushgateway:9091", echo=False)]
