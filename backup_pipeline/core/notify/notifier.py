"""Who is told: every configured channel gets the same events, each rendering them its own way.

Discord (DISCORD_WEBHOOK_URL, or a bot) hears about every database; apprise URLs (BACKUP_NOTIFY_URLS, or
`notify_urls` in the databases file, per database or in `defaults:`) hear about their own databases, and
about runs that concern no one database. A channel that fails is logged and does not stop the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from backup_pipeline.core.config import Settings
from backup_pipeline.core.notify.apprise_channel import AppriseChannel
from backup_pipeline.core.notify.channel import Channel, log
from backup_pipeline.core.notify.discord import DiscordChannel
from backup_pipeline.core.notify.events import Event
from backup_pipeline.core.notify.redact import Redactor


class Notifier:
    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None):
        self.discord = DiscordChannel(settings.discord, environ)
        self.apprise_by_database = {
            db.key: tuple(AppriseChannel(url, position) for position, url in enumerate(db.notify_urls, start=1))
            for db in settings.databases
        }
        self.redact = Redactor.from_settings(settings, environ)
        self.success_notices = settings.discord.success_notices

    @property
    def configured(self) -> bool:
        return self.discord.configured or any(self.apprise_by_database.values())

    def channels_for(self, database_key: str | None) -> list[Channel]:
        """Discord, and the database's own URLs; for an event of no one database, every URL once."""
        channels: list[Channel] = [self.discord] if self.discord.configured else []
        if database_key in self.apprise_by_database:
            return channels + list(self.apprise_by_database[database_key])
        seen: dict[str, Channel] = {}
        for group in self.apprise_by_database.values():
            for channel in group:
                seen.setdefault(channel.url, channel)
        return channels + list(seen.values())

    def describe(self) -> str:
        """Where messages go, safe to log."""
        names = [channel.describe() for channel in self.channels_for(None)]
        return ", ".join(names) if names else "nowhere (no channel is configured)"

    def notify(self, events: Sequence[Event], log=log) -> bool:
        """Sends the events (one message per channel) to every channel that should hear of them. True when at
        least one channel accepted it. Never raises."""
        if not events:
            return False
        delivered = False
        targets: dict[int, tuple[Channel, list[Event]]] = {}
        for event in events:
            for channel in self.channels_for(event.database_key):
                targets.setdefault(id(channel), (channel, []))[1].append(event)
        for channel, channel_events in targets.values():
            try:
                delivered |= channel.send(channel_events, self.redact, log=log)
            except Exception as error:  # a channel's bug must not silence the others
                log.warning(f"notification not sent to {channel.describe()}: {type(error).__name__}")
        return delivered
