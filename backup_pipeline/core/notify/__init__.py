"""Notifications: what a message says (events.py) apart from how each channel shows and sends it.

    events.py           Event: the kind of news, database, run, backup, error, link (plain values)
    text.py             the words of every message, with a channel's markup
    channel.py          Channel: render + deliver, never raising
    discord.py          Discord (webhook or bot)
    apprise_channel.py  every service apprise knows, one URL each (BACKUP_NOTIFY_URLS)
    notifier.py         which channels hear of which database; redaction before anything leaves
    heartbeat.py        start / success / fail pings of a backup run (healthchecks.io, Uptime Kuma, Cronitor)

A new channel is a module with a Channel subclass, and one line in Notifier.channels_for.
"""
