"""The roles a restore needs: refused before anything is created when the target server lacks them, unless the
restore says how; created from the roles saved with the backup when asked."""

from __future__ import annotations

import json
from collections.abc import Callable

from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.privileges.applying import first_line
from backup_pipeline.core.privileges.choices import PrivilegeChoices
from backup_pipeline.core.privileges.recorded import POLICY

Log = Callable[[str], None]


def existing_roles(conn) -> set[str]:
    return {row[0] for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}


def check_roles(conn, roles: dict[str, list[str]], choices: PrivilegeChoices, saved_roles: bool, where: str) -> None:
    """Refuses, before anything is created, a restore naming roles the target server lacks, unless told how."""
    have = existing_roles(conn)
    unknown_targets = sorted({new for new in choices.role_map.values() if new not in have})
    if unknown_targets:
        raise ConfigurationError(
            f"--role-map maps to roles {where} lacks: {', '.join(unknown_targets)}. Nothing was created; create "
            "them first or map to roles that exist"
        )
    missing = {
        role: uses
        for role, uses in roles.items()
        if role not in have and role not in choices.role_map and not choices.skips(uses)
    }
    if not missing or (choices.create_roles and saved_roles):
        return
    named = "; ".join(f"{role} ({', '.join(uses)})" for role, uses in sorted(missing.items()))
    ways = [
        "--role-map OLD=NEW to use roles that exist here instead",
        "--no-owner --no-acl to restore without owners, GRANTs and REVOKEs (objects then belong to the restoring role)",
    ]
    if saved_roles:
        ways.insert(0, "--create-roles to create them from the roles saved with the backup (without passwords)")
    elif choices.create_roles:
        ways.insert(0, "(--create-roles cannot help: this backup carries no saved roles)")
    if any(POLICY in uses for uses in missing.values()):
        ways.append("a role a row security policy names must exist or be mapped whatever the flags")
    raise ConfigurationError(
        f"the backup names roles {where} lacks: {named}. Nothing was created. Say how to restore: " + "; or ".join(ways)
    )


def create_saved_roles(conn, definitions: bytes, roles, log: Log) -> list[str]:
    """Creates those of `roles` that do not exist, from the backup's saved definitions; returns what it could not."""
    from psycopg import sql

    try:
        saved = {d["name"]: d for d in json.loads(definitions)["roles"]}
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(
            "the roles saved with the backup cannot be read (the object is damaged): nothing was created; restore "
            "with --role-map OLD=NEW or --no-owner --no-acl instead"
        ) from None
    have = existing_roles(conn)
    created, problems = [], []
    for name in sorted(set(roles) - have):
        definition = saved.get(name)
        if definition is None:
            problems.append(f"role {name}: not among the saved roles")
            continue
        options = [
            ("LOGIN" if definition["login"] else "NOLOGIN"),
            ("INHERIT" if definition["inherit"] else "NOINHERIT"),
            ("CREATEDB" if definition["createdb"] else "NOCREATEDB"),
        ]
        # Never from a stored object: anyone who can write to the bucket could otherwise mint a superuser.
        powers = [p.upper() for p in ("superuser", "createrole", "replication", "bypassrls") if definition.get(p)]
        if powers:
            problems.append(f"role {name}: created without {', '.join(powers)}; grant that by hand if it needs it")
        statement = sql.SQL("CREATE ROLE {} " + " ".join(options) + " CONNECTION LIMIT {}").format(
            sql.Identifier(name), sql.Literal(definition["connection_limit"])
        )
        try:
            conn.execute(statement)
            created.append(name)
        except Exception as error:
            problems.append(f"role {name}: {first_line(error)}")
    for name in created:
        for group in saved[name]["member_of"]:
            if group not in created:  # only among the roles just created: never into a role that holds powers
                problems.append(f"role {name}: not made a member of {group} (grant that by hand if it needs it)")
                continue
            try:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))
            except Exception as error:
                problems.append(f"GRANT {group} TO {name}: {first_line(error)}")
    if created:
        log(
            f"created roles {', '.join(created)} from the roles saved with the backup, without passwords: set one "
            "(ALTER ROLE ... PASSWORD) for each that logs in"
        )
    return problems
