"""The Dagster UI path in a real browser: a pre-migration backup taken by clicks alone, watched, and its proof read.

Clicks exactly what README.md's "UI walkthrough" says (keep the two in step). Runs `dagster dev` (webserver and
daemon) on a free loopback port with its own DAGSTER_HOME, stores to a moto S3 bucket, and drives Debian's
Chromium (/usr/bin/chromium; `.ci/run` installs it) through Playwright. A screenshot of every step lands in
test-artifacts/, the last page as test-artifacts/ui-final.png, beside the `dagster dev` log.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.storage import open_storage
from tests.support.processes import free_port, start_process, stop_process, wait_for_http

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BACKUP_ASSETS = ["database_dump", "offsite_backup", "restore_verification", "backup_retention"]
# The machine is shared with other test runs: waits are generous, and only for things a user would wait for.
UI_TIMEOUT_MS = 30_000
RUN_TIMEOUT_MS = 75_000
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def dagster_ui(s3_env, tmp_path):
    """`dagster dev` for the s3_env configuration; yields its base URL and is always stopped."""
    port = free_port()
    log_path = tmp_path / "dagster-dev.log"
    dagster = Path(sys.executable).with_name("dagster")
    with log_path.open("wb") as log:
        process = start_process(
            [str(dagster), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/server_info", process, timeout=120)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(process)
            stop_stragglers(process.pid)
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(log_path, ARTIFACTS / "ui-dagster-dev.log")


def stop_stragglers(group: int, grace_s: float = 5) -> None:
    """`dagster dev` can exit before its code server does: wait for the whole process group, then kill the rest."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


@pytest.fixture
def page(tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`, as .ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            yield page
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / "ui-last-page.png")  # where a failure stopped
        finally:
            expect.set_options(timeout=5_000)  # Playwright's default, for anything else in this process
            browser.close()


class Steps:
    """Numbered screenshots, one per README step, so a failure shows the last page that worked."""

    def __init__(self, page: Page):
        self.page = page
        self.count = 0
        self.started = time.monotonic()
        ARTIFACTS.mkdir(exist_ok=True)
        for old in ARTIFACTS.glob("ui-*.png"):
            old.unlink()

    def shot(self, name: str) -> None:
        self.count += 1
        self.page.screenshot(path=ARTIFACTS / f"ui-{self.count:02d}-{name}.png")
        print(f"step {self.count} {name}: {time.monotonic() - self.started:.1f} s")  # shown when the test fails


def click_nav(page: Page, name: str) -> None:
    """A link of the left-hand navigation (its accessible name is the icon's name, then the label)."""
    page.get_by_role("navigation").get_by_role("link", name=re.compile(rf"(^|\s){re.escape(name)}$")).click()


def run_row(page: Page, text: str):
    """The row of the runs list showing `text` (the list is not a table: the innermost block with a View link)."""
    view = page.get_by_role("link", name="View", exact=True)
    return page.locator("div").filter(has_text=text).filter(has=view).last


def metadata_row(page: Page, key: str):
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))


def stored_backup(env: dict, backup_id: str):
    """The backup as the storage listing shows it (one listing, as `backup-db list` does), and its manifest."""
    settings = load_settings(env)
    db = settings.databases[0]
    catalog = BackupCatalog(
        open_storage(settings.storage),
        db.storage_prefix,
        db.name_prefix or PostgresTarget.from_url(env["DATABASE_URL"], "DATABASE_URL").dbname,
    )
    name = BackupName(prefix=catalog.name_prefix, id=BackupId.parse(backup_id))
    entries = {str(entry.name): entry for entry in catalog.entries()}
    return entries.get(str(name)), catalog.manifest(name) if str(name) in entries else None


def test_pre_migration_backup_taken_watched_and_read_in_the_ui(dagster_ui, page, s3_env):
    steps = Steps(page)

    # 1. Open the UI; a first visit asks to join the Dagster community: Skip.
    page.goto(dagster_ui)
    page.get_by_role("button", name="Skip").click()
    expect(page.get_by_role("navigation")).to_be_visible()

    # 2. Find the backup assets: Catalog lists them in group "backups"; Lineage draws their chain.
    click_nav(page, "Catalog")
    for asset in BACKUP_ASSETS:
        expect(page.get_by_role("link", name=asset)).to_be_visible()
    expect(page.get_by_role("link", name="backups")).to_have_count(len(BACKUP_ASSETS))
    steps.shot("catalog")
    click_nav(page, "Lineage")
    for asset in BACKUP_ASSETS:
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    steps.shot("lineage")

    # 3. Start a pre-migration backup: Jobs → request_backup → Launchpad (pre-filled) → Launch Run.
    click_nav(page, "Jobs")
    page.get_by_role("link", name="request_backup").click()
    page.get_by_role("tab", name="Launchpad").click()
    expect(page.get_by_text("backup_type: pre-migration")).to_be_visible()
    steps.shot("launchpad")
    page.get_by_role("button", name="Launch Run").click()
    requested = page.get_by_text(re.compile(r"backup pre-migration_\d{8}_\d{6} (of \S+ )?requested"))
    expect(requested).to_be_visible(timeout=RUN_TIMEOUT_MS)
    backup_id = re.search(r"pre-migration_\d{8}_\d{6}", requested.inner_text()).group(0)
    steps.shot("request-run")

    # 4. Watch it: Runs → the backup_job row for that partition, started by backup_request_sensor → View.
    click_nav(page, "Runs")
    backup_run = run_row(page, f"partition: {backup_id}")
    expect(backup_run).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(backup_run).to_contain_text("backup_job")
    expect(backup_run).to_contain_text("backup_request_sensor")
    backup_run.get_by_role("link", name="View", exact=True).click()
    expect(page.get_by_text(f"partition: {backup_id}")).to_be_visible()
    outcome = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(outcome).to_be_visible(timeout=RUN_TIMEOUT_MS)
    steps.shot("backup-run")
    assert outcome.inner_text() == "Success", "the backup run did not succeed: see test-artifacts/ui-*.png and its log"

    # The backup is in storage: complete (manifest written) and verified (restore_verification's marker written).
    entry, manifest = stored_backup(s3_env, backup_id)
    assert entry is not None, f"{backup_id} is not in bucket {s3_env['BACKUP_S3_BUCKET']}"
    assert entry.complete and entry.verified
    assert entry.size_bytes == manifest.size_bytes > 0

    # 5. Read its proof: Catalog → restore_verification shows this partition with size, sha256 and verified.
    click_nav(page, "Catalog")
    page.get_by_role("link", name="restore_verification").click()
    expect(page.get_by_role("link", name=backup_id)).to_be_visible()
    expect(metadata_row(page, "verified")).to_contain_text("true")
    expect(metadata_row(page, "sha256")).to_contain_text(manifest.sha256)
    expect(metadata_row(page, "size_bytes")).to_contain_text(str(manifest.size_bytes))
    steps.shot("asset-metadata")
    page.get_by_role("button", name="Plots").click()
    expect(page.get_by_role("table")).to_have_count(0)
    expect(page.get_by_text("size_bytes", exact=True)).to_be_visible()
    steps.shot("asset-plots")

    # 6. Find the restore job: Jobs → restore_job says what to set in its Launchpad.
    click_nav(page, "Jobs")
    page.get_by_role("link", name="restore_job").click()
    expect(page.get_by_text("confirm: RESTORE").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "ui-final.png")
