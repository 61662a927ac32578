"""Where alerts go. The webhook URL and the bot token are secrets: held by the name of their variable."""

from __future__ import annotations

from backup_pipeline.core import config_fields as f
from backup_pipeline.core.settings.declaration import DATABASE, DISCORD, Setting

SETTINGS = (
    Setting(
        name="webhook_url_env",
        env="DISCORD_WEBHOOK_URL",
        section=DISCORD,
        help="where alerts go: a Discord webhook",
        shown_default="off",
        holds_name=True,
        value_type=f.WebhookUrl,
    ),
    Setting(
        name="bot_token_env",
        env="DISCORD_BOT_TOKEN",
        section=DISCORD,
        help="or: a bot's token, posting to `DISCORD_BACKUP_CHANNEL_ID`",
        shown_default="off",
        holds_name=True,
    ),
    Setting(
        name="channel_id",
        env="DISCORD_BACKUP_CHANNEL_ID",
        section=DISCORD,
        help="the channel the bot posts alerts to",
        type=f.ChannelId,
        shown_default="off",
    ),
    Setting(
        name="api_base_url",
        env="DISCORD_API_BASE_URL",
        section=DISCORD,
        help="Discord API root (for proxies and tests)",
        type=f.DiscordApiUrl,
        default="https://discord.com/api/v10",
    ),
    Setting(
        name="success_notices",
        env="BACKUP_DISCORD_SUCCESS_NOTICES",
        section=DISCORD,
        help="send a notice for each completed backup, on every channel (`false` keeps only failures and warnings)",
        type=f.Flag,
        default=True,
    ),
    Setting(
        name="notify_urls",
        env="BACKUP_NOTIFY_URLS",
        section=DATABASE,
        help=(
            "more channels: apprise URLs (`slack://…`, `msteams://…`, `tgram://…`, `mailtos://…`, `json://…`; "
            "[the list](https://github.com/caronc/apprise/wiki)) separated by commas or spaces, each told "
            "everything Discord is; in the databases file a list, whose items may be `${VARIABLE}` holding URLs "
            "(see [Alerts](#alerts))"
        ),
        type=f.NotifyUrls,
        default=(),
        shown_default="none",
        secret=True,
    ),
    Setting(
        name="group_seconds",
        env="BACKUP_ALERT_GROUP_SECONDS",
        section=DISCORD,
        help=(
            "backup failures with one cause (a server unreachable, storage failing) within this many seconds of "
            "the first are posted as one message listing the databases, and their recovery as one (`0`: each "
            "failure its own message); see [Several databases](#several-databases)"
        ),
        type=float,
        default=60,
        bounds=(0, 86_400),
    ),
)
