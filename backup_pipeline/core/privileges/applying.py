"""Applying the backup's owners and privileges one statement at a time, so each one the restoring role may not
apply is named; and the database's own properties: its encoding and locale when it is created, its owner,
GRANT/REVOKE and settings just before the swap."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from backup_pipeline.core.privileges.choices import PrivilegeChoices
from backup_pipeline.core.privileges.script import PrivilegeScript, map_roles, quote_ident

# Settings whose values are lists that pg_dump quotes element by element (PostgreSQL's GUC_LIST_QUOTE).
_LIST_SETTINGS = frozenset(
    {
        "search_path",
        "temp_tablespaces",
        "session_preload_libraries",
        "local_preload_libraries",
        "shared_preload_libraries",
        "unix_socket_directories",
        "default_text_search_config",
    }
)


@dataclass
class AppliedPrivileges:
    """What a restore applied of the backup's owners and privileges, and exactly what it could not."""

    applied: int = 0
    not_applied: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def apply_script(conn, script: PrivilegeScript, choices: PrivilegeChoices, result: AppliedPrivileges) -> None:
    """Owners first (a GRANT by a superuser is recorded as the owner's), then ACL entries, one at a time."""
    statements = ([] if choices.no_owner else script.owners) + ([] if choices.no_acl else script.acls)
    for statement in statements:
        _apply(conn, map_roles(statement, choices.role_map), result)


def _apply(conn, statement, result: AppliedPrivileges, shown: tuple[str, str] | None = None) -> None:
    """`shown`: (scratch name, final name), so a statement on the scratch database is reported by the name the
    user knows."""
    try:
        conn.execute(statement)
        result.applied += 1
    except Exception as error:
        text = statement.as_string(conn) if hasattr(statement, "as_string") else statement
        if shown:
            text = text.replace(quote_ident(shown[0]), quote_ident(shown[1]))
        result.not_applied.append(f"{' '.join(text.split())} ({first_line(error)})")
        conn.execute("RESET SESSION AUTHORIZATION")  # an ACL entry may have switched it before failing
        conn.execute("RESET ROLE")


def create_database_sql(name: str, properties: dict | None, server_major: int):
    """CREATE DATABASE `name` from template0 with the original's encoding and locale (when recorded)."""
    from psycopg import sql

    parts = [sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))]
    if properties:
        parts.append(
            sql.SQL("ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                sql.Literal(properties["encoding"]),
                sql.Literal(properties["collate"]),
                sql.Literal(properties["ctype"]),
            )
        )
        provider = properties.get("locale_provider")
        if provider and provider != "libc" and server_major >= 15:
            locale_word = "BUILTIN_LOCALE" if provider == "builtin" else "ICU_LOCALE"
            parts.append(
                sql.SQL("LOCALE_PROVIDER {} " + locale_word + " {}").format(
                    sql.SQL(provider), sql.Literal(properties.get("locale") or "")
                )
            )
    return sql.SQL(" ").join(parts)


def apply_database_properties(
    conn, database: str, properties: dict, choices: PrivilegeChoices, result: AppliedPrivileges, final_name: str
) -> None:
    """The original database's owner, GRANT/REVOKE on it and its settings, onto `database` (before the swap to
    `final_name`)."""
    from psycopg import sql

    db = sql.Identifier(database)
    owner = choices.role(properties["owner"])
    shown = (database, final_name)

    def apply(statement) -> None:
        _apply(conn, statement, result, shown)

    if not choices.no_owner:
        apply(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(owner)))
    if not choices.no_acl and properties.get("acl") is not None:
        # Emptied, then granted item by item in the original order, so the ACL reads as it did.
        apply(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        current_owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()[0]
        apply(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, sql.Identifier(current_owner)))
        for item in properties["acl"]:
            _grant_database(apply, db, item, choices, {current_owner, owner})
    for setting in properties.get("settings") or []:
        role = setting["role"]
        if role is not None and choices.no_owner and choices.no_acl:
            result.notes.append(f"left out the settings of role {role} in the database (--no-owner --no-acl)")
            continue
        for entry in setting["config"]:
            variable, _, value = entry.partition("=")
            target = (
                sql.SQL("ALTER DATABASE {}").format(db)
                if role is None
                else sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(choices.role(role)), db)
            )
            apply(target + sql.SQL(" SET {} TO ").format(sql.Identifier(variable)) + _setting_value(variable, value))


def _grant_database(apply, db, item: dict, choices: PrivilegeChoices, owners: set[str]) -> None:
    """`owners`: the database's owner now and the one it should have (when that could not be applied, its grants
    are made by the owner there is, rather than not at all)."""
    from psycopg import sql

    grantee = sql.SQL("PUBLIC") if item["grantee"] is None else sql.Identifier(choices.role(item["grantee"]))
    for grantable in (False, True):
        privileges = [p for p, g in item["privileges"] if g == grantable]
        if not privileges:
            continue
        statement = sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
            sql.SQL(", ").join(sql.SQL(p) for p in privileges),
            db,
            grantee,
            sql.SQL(" WITH GRANT OPTION" if grantable else ""),
        )
        grantor = choices.role(item["grantor"])
        if grantor not in owners:  # granted by someone else: as them, so the grantor reads as it did
            statement = sql.SQL("SET ROLE {}; {}; RESET ROLE").format(sql.Identifier(grantor), statement)
        apply(statement)


def _setting_value(variable: str, value: str):
    """The value as pg_dump writes it: list settings element by element, others as one literal."""
    from psycopg import sql

    if variable.lower() not in _LIST_SETTINGS:
        return sql.Literal(value)
    elements = [e.strip() for e in re.findall(r'(?:"(?:[^"]|"")*"|[^,])+', value)]
    return sql.SQL(", ").join(
        sql.Literal(e[1:-1].replace('""', '"') if e.startswith('"') else e) for e in elements if e
    )


def first_line(error: BaseException) -> str:
    """The error's first line, or its class when it says nothing: one line per statement not applied."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
