"""Events rendered for each channel: the same facts in Discord's markdown and in plain text, and redaction of
notification URLs (whose every long part may be the token) without garbling host names."""

from datetime import UTC, datetime

import pytest

from backup_pipeline.core.notify.discord import DISCORD_MARKUP
from backup_pipeline.core.notify.events import BackupFacts, Event, EventKind, FreshnessFacts, RunError, RunFacts
from backup_pipeline.core.notify.redact import MASK, Redactor, url_secrets
from backup_pipeline.core.notify.text import PLAIN, render

RUN = RunFacts(
    job="backup_job",
    run_id="r1",
    run_url="http://dagster.test/runs/r1",
    kind="backup",
    database="shop",
    backup_name="shop_daily_20261206_060000",
    backup_type="daily",
)
FRESH = FreshnessFacts(26, "shop_daily_x", datetime(2026, 12, 5, 3, 0, tzinfo=UTC), 27.0)
EVENTS = [
    Event.failure(RUN, RunError("pg_dump: error: connection lost\nmore"), "shop"),
    Event.failure(
        RunFacts("prune_job", "r2", None, "prune", "shop"), RunError("would delete 4 of 7", "RetentionRefused")
    ),
    Event.success(RUN, BackupFacts("shop_daily.dump", 2048, 3.2, True, 6700), "shop"),
    Event.health_warning(RUN, [("rows_not_dropped", "rows fell by 60 %")], "shop"),
    Event.stale("shop", FRESH, "http://dagster.test/assets/x", "shop"),
    Event.recovered("shop", FRESH, None, "shop"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.kind)
def test_every_kind_says_the_same_facts_in_markdown_and_in_plain_text(event):
    markdown, plain = render(event, DISCORD_MARKUP).text(), render(event, PLAIN).text()
    assert "shop" in render(event, PLAIN).headline
    assert not any(mark in plain for mark in ("**", "`", ":x:", ":warning:", ":white_check_mark:"))
    assert markdown.startswith(":") and "**" in markdown
    # Strip Discord's markup and the two say the same words.
    stripped = markdown.replace("**", "").replace("`", "")
    stripped = stripped.split(" ", 1)[1]  # the icon
    assert stripped == plain


def test_the_kind_of_a_failure_and_its_first_line():
    failure, refused = EVENTS[0], EVENTS[1]
    assert failure.kind == EventKind.FAILURE and refused.kind == EventKind.RETENTION_REFUSED
    assert "Error: pg_dump: error: connection lost" in render(failure).text() and "more" not in render(failure).text()
    assert render(refused).headline == "Retention refused to prune shop: nothing was deleted"


def test_url_secrets_mask_every_long_part_but_host_names():
    urls = ["tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123", "json://127.0.0.1:8080/hooks/abcdef1234"]
    redact = Redactor([s for url in urls for s in url_secrets(url)])
    text = redact(
        "failed to send to tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123 (bot "
        "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw); hook abcdef1234 on 127.0.0.1 refused"
    )
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in text and "abcdef1234" not in text
    assert "127.0.0.1" in text and text.count(MASK) == 3
