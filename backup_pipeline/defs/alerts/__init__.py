"""Alerts on every configured channel (core/notify): run failures (also of runs whose process died), backup
notices, the dead-man's switch and the freshness check. `definitions.py` gathers them; the command line imports
only what it announces with (announce.py), so this package imports nothing itself."""
