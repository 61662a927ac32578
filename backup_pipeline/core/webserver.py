"""Where the Dagster UI is, for links in messages: DAGSTER_WEBSERVER_URL, else a webserver answering on this
machine's default address; no link at all when neither is known, rather than one that leads nowhere.
"""

from __future__ import annotations

import json
import time
import urllib.request

DEFAULT_WEBSERVER_URL = "http://localhost:3000"
PROBE_TIMEOUT_S = 0.5
# A sensor asks for every message: look again at most this often.
PROBE_CACHE_S = 60.0

_probed: dict[str, tuple[float, bool]] = {}


def webserver_base_url(configured: str | None) -> str | None:
    """The UI's base URL: the configured one, else the local default when a Dagster webserver answers there."""
    if configured:
        return configured.rstrip("/")
    return DEFAULT_WEBSERVER_URL if webserver_answers(DEFAULT_WEBSERVER_URL) else None


def run_link(configured: str | None, run_id: str) -> str | None:
    base = webserver_base_url(configured)
    return f"{base}/runs/{run_id}" if base else None


def asset_link(configured: str | None, asset_path: list[str]) -> str | None:
    base = webserver_base_url(configured)
    return f"{base}/assets/{'/'.join(asset_path)}" if base else None


def webserver_answers(base_url: str) -> bool:
    """Whether a Dagster webserver (not just anything on that port) answers at `base_url`."""
    now = time.monotonic()
    cached = _probed.get(base_url)
    if cached is not None and now - cached[0] < PROBE_CACHE_S:
        return cached[1]
    try:
        with urllib.request.urlopen(f"{base_url}/server_info", timeout=PROBE_TIMEOUT_S) as response:
            answers = "dagster_webserver_version" in json.loads(response.read(64 * 1024))
    except (OSError, ValueError):
        answers = False
    _probed[base_url] = (now, answers)
    return answers
