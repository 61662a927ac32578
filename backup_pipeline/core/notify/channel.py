"""What every notification channel is: it renders events its own way and delivers them, never raising.

A new channel is one module here with a subclass of Channel (render and deliver) and one line in
notifier.channels_for. Sending must never hurt what it reports on: a channel logs and swallows its failures
and bounds its own waiting. Whatever leaves passes through the notifier's redaction first.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from backup_pipeline.core.notify.events import Event, Severity
from backup_pipeline.core.notify.text import Markup, Rendered, render

log = logging.getLogger("backup_pipeline.notify")


class Channel(ABC):
    markup: Markup

    @abstractmethod
    def describe(self) -> str:
        """Which channel this is, safe to log: never a URL or a token."""

    def render(self, events: Sequence[Event]) -> Rendered:
        """One message about the events (usually one); several are written one after another."""
        parts = [render(event, self.markup) for event in events]
        if len(parts) == 1:
            return parts[0]
        rest = [part.text() for part in parts[1:]]
        return Rendered(parts[0].headline, (*parts[0].lines, *("\n" + text for text in rest)))

    @abstractmethod
    def deliver(self, message: Rendered, severity: Severity, redact: Callable[[str], str], log=log) -> bool:
        """Sends one rendered message, passing every text through `redact`; True when accepted. Never raises."""

    def send(self, events: Sequence[Event], redact: Callable[[str], str] = lambda text: text, log=log) -> bool:
        worst = min((event.severity for event in events), key=list(Severity).index)
        return self.deliver(self.render(events), worst, redact, log=log)
