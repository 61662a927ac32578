"""The `backup-db` console script: the verb (cli/parser.py declares the arguments), and the exit code.

Exit codes: 0 done, 1 failed (the failing step's message; for `status`: a database is not fresh), 2 bad usage
or configuration, 3 timed out (the run keeps going), 130 interrupted. Heavy modules (Dagster, boto3, psycopg) load only in the verbs that need them.
"""

from __future__ import annotations

import contextlib
import os
import sys

from backup_pipeline.cli.parser import build_parser

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130  # Ctrl-C, or a restore stopped before its swap


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
