"""What a restore checks before it creates anything: the target database (new, or there to replace), that the
backup is of that database (or of the configured one), and that the roles the backup names exist."""

from __future__ import annotations

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_identity
from backup_pipeline.core.postgres.databases import database_exists
from backup_pipeline.core.postgres.maintenance import admin_connection
from backup_pipeline.core.privileges import AppliedPrivileges, PrivilegeChoices, check_roles, create_saved_roles
from backup_pipeline.core.restore.plan import Log


def note_lost_database(server: PostgresTarget, target_db: str, exists: bool, log: Log) -> None:
    """Says so when the database being restored is the very one the URL names and it is gone (a DROP DATABASE)."""
    if not exists and target_db == server.dbname:
        log(f"database {target_db} does not exist on {server.server} (dropped?): it is restored as a new database")


def check_restore_target(admin, server: PostgresTarget, target_db: str, replace: bool) -> bool:
    """Whether `target_db` exists; refuses a new restore over an existing database, or --replace of a missing one."""
    exists = database_exists(admin, target_db)
    if exists and not replace:
        raise ConfigurationError(
            f"database '{target_db}' already exists on {server.describe()}: choose a new name, or pass "
            "--replace to restore over it"
        )
    if replace and not exists:
        raise ConfigurationError(
            f"--replace was given but database '{target_db}' does not exist on {server.describe()}"
        )
    return exists


NO_PRIVILEGES_NOTE = (
    "this backup carries no owners or privileges (it was taken with --no-owner --no-acl, before backups kept "
    "them): every restored object belongs to the restoring role, with no GRANTs or REVOKEs, and the database has "
    "the server's default encoding and settings"
)


def check_backup_roles(
    admin,
    catalog: BackupCatalog,
    manifest: Manifest,
    privileges: PrivilegeChoices,
    server: PostgresTarget,
    log: Log,
    applied: AppliedPrivileges | None = None,
    create: bool = True,
) -> None:
    """Before anything is created: the roles the backup names exist (or are mapped, created or left out).
    `create`: create the missing roles now when --create-roles says so (not when only checking)."""
    if not manifest.carries_privileges:
        log(NO_PRIVILEGES_NOTE)
        if applied is not None:
            applied.notes.append(NO_PRIVILEGES_NOTE)
        return
    roles = manifest.roles or {}
    saved = manifest.roles_key is not None and catalog.storage.head(manifest.roles_key) is not None
    check_roles(admin, roles, privileges, saved, f"server {server.server}")
    if not create:
        return
    if privileges.create_roles and saved:
        wanted = [role for role in roles if role not in privileges.role_map]
        problems = create_saved_roles(admin, catalog.storage.read_bytes(manifest.roles_key), wanted, log)
        if applied is not None:
            applied.not_applied.extend(problems)
    superuser = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    if not superuser and not privileges.no_owner:
        owners = [privileges.role(r) for r, uses in roles.items() if {"owner", "database owner"} & set(uses)]
        cannot = [
            role
            for role in sorted(set(owners))
            if not admin.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,)).fetchone()[0]
        ]
        if cannot:
            log(
                f"the restoring role is not a superuser nor a member of {', '.join(cannot)}: objects those roles own "
                "stay owned by the restoring role, and the restore lists each statement it could not apply"
            )


def check_backup_source(
    admin,
    manifest: Manifest,
    server: PostgresTarget,
    target_db: str,
    replacing: bool,
    source: PostgresTarget | None,
    from_other_source: bool,
    log: Log,
) -> None:
    """Refuses a backup of another server or database than the one it is for: the database it replaces, or
    (a new database) `source`, the configured database whose backups these are. `from_other_source` lets it
    through, saying so. A backup that records no server (taken by an older version) is checked by name only."""
    if replacing:
        expected = (server_identity(admin), server.server, target_db)
        what = f"the database it would replace, {target_db} on {server.server}"
    elif source is not None:
        expected = (
            _identity_of(source, admin if source.server == server.server else None),
            source.server,
            source.dbname,
        )
        what = f"the configured database {source.dbname} on {source.server}"
    else:
        return
    system_id, host_port, database = expected
    same_server = None
    if manifest.source_system_identifier and system_id:
        same_server = manifest.source_system_identifier == system_id
    elif manifest.source_server:
        same_server = manifest.source_server == host_port
    if manifest.database == database and same_server is not False:
        if same_server is None:
            log(f"{manifest.name} does not record the server it was taken on: only its database name was checked")
        return
    taken = f"database {manifest.database}" + (f" on {manifest.source_server}" if manifest.source_server else "")
    if same_server is False and manifest.source_server == host_port:
        taken += " (another server at that address: its system identifier differs)"
    if from_other_source:
        log(f"restoring {manifest.name}, a backup of {taken}, though it is not of {what}: --from-other-source")
        return
    raise ConfigurationError(
        f"{manifest.name} is a backup of {taken}, not of {what}: nothing was changed. Choose a backup of that "
        "database (`backup-db list` shows where each was taken), or pass --from-other-source "
        "(from_other_source: true in run config) to restore it anyway"
    )


def _identity_of(source: PostgresTarget, admin) -> str | None:
    """The system identifier of `source`'s server, through `admin` when it is on that server; None when unreachable."""
    if admin is not None:
        return server_identity(admin)
    try:
        with admin_connection(source) as conn:
            return server_identity(conn)
    except BackupError:
        return None
