"""Owners, privileges and database properties: recorded when a backup is taken, reapplied when it is restored.

The archive keeps every object's owner and GRANT/REVOKE (pg_dump without --no-owner --no-acl). What a pg_dump
archive leaves out without --create (the database's owner, its own GRANT/REVOKE, `ALTER DATABASE ... SET`,
`ALTER ROLE ... IN DATABASE ... SET`, its encoding, collation and ctype) is read from the catalog in the dump's
snapshot and kept in the manifest (`database_properties`), with the roles the backup names (`roles`). The
definitions of those roles are kept in a small object beside the dump, so a restore into a new cluster can
create them.

A restore puts the contents in with `pg_restore --no-owner --no-acl`, then applies the owners and privileges
one statement at a time (after a role map, when given), so each one the restoring role may not apply is named,
and applies the database's own properties last, just before the swap (a REVOKE CONNECT applied earlier would
lock pg_restore ou

By concern: `recorded` (what a backup records, read from the catalog in the dump's snapshot), `choices` (how a
restore treats owners and privileges: --no-owner, --no-acl, --role-map, --create-roles), `roles` (the roles
a restore needs: checked, created from the saved definitions), `script` (the archive's ownership and privilege
statements, with roles renamed), `applying` (those statements and the database's own properties applied one at a
time, each failure named).
"""

from backup_pipeline.core.privileges.applying import (
    AppliedPrivileges,
    apply_database_properties,
    apply_script,
    create_database_sql,
)
from backup_pipeline.core.privileges.choices import PrivilegeChoices, parse_role_map
from backup_pipeline.core.privileges.recorded import database_properties, named_roles, role_definitions
from backup_pipeline.core.privileges.roles import check_roles, create_saved_roles
from backup_pipeline.core.privileges.script import map_roles, privilege_script

__all__ = [
    "AppliedPrivileges",
    "PrivilegeChoices",
    "apply_database_properties",
    "apply_script",
    "check_roles",
    "create_database_sql",
    "create_saved_roles",
    "database_properties",
    "map_roles",
    "named_roles",
    "parse_role_map",
    "privilege_script",
    "role_definitions",
]
