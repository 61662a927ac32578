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
lock pg_restore out).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from backup_pipeline.core.errors import ConfigurationError

Log = Callable[[str], None]

# What the manifest says a role is used for: objects owned, privileges granted, the database's owner, the
# database's own privileges, its per-role settings, row security policies.
OWNER, GRANTEE, DATABASE_OWNER, DATABASE_GRANTEE, SETTING, POLICY = (
    "owner",
    "grantee",
    "database owner",
    "database grantee",
    "setting",
    "policy",
)
_OWNER_USES = frozenset({OWNER, DATABASE_OWNER})
_ACL_USES = frozenset({GRANTEE, DATABASE_GRANTEE})
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

_DATABASE_SQL = """
    SELECT d.oid, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
           d.datacl IS NULL
    FROM pg_database d WHERE d.datname = current_database()
"""
_DATABASE_ACL_SQL = """
    SELECT pg_get_userbyid(a.grantor), CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
           a.privilege_type, a.is_grantable
    FROM pg_database d, aclexplode(d.datacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n)
    WHERE d.datname = current_database() ORDER BY a.n
"""
_SETTINGS_SQL = """
    SELECT r.rolname, s.setconfig FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
    WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY r.rolname NULLS FIRST
"""
# Roles objects of this database depend on (pg_shdepend: owners, ACLs, policies, initial privileges), and the
# database's own dependencies (owner, ACL). The bootstrap superuser is pinned, so never listed there.
_SHDEPEND_SQL = """
    SELECT DISTINCT pg_get_userbyid(s.refobjid), s.deptype
    FROM pg_shdepend s, pg_database d
    WHERE d.datname = current_database() AND s.refclassid = 'pg_authid'::regclass
      AND (s.dbid = d.oid OR (s.dbid = 0 AND s.classid = 'pg_database'::regclass AND s.objid = d.oid))
"""
_BOOTSTRAP_OWNS_SQL = """
    SELECT pg_get_userbyid(10) WHERE EXISTS (
        SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relowner = 10 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
          AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
        UNION ALL
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.proowner = 10 AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        UNION ALL
        SELECT 1 FROM pg_namespace n WHERE n.nspowner = 10
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public')
          AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%')
"""
_ROLE_DEFINITIONS_SQL = """
    SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolreplication,
           r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text,
           ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                 WHERE m.member = r.oid ORDER BY 1)
    FROM pg_roles r WHERE r.rolname = ANY(%s) ORDER BY 1
"""
_DEPTYPE_USE = {"o": OWNER, "a": GRANTEE, "i": GRANTEE, "r": POLICY}


def database_properties(conn) -> dict:
    """What pg_dump leaves out without --create: owner, encoding, locale, the database's ACL, its settings."""
    server_num = int(conn.execute("SHOW server_version_num").fetchone()[0])
    _oid, owner, encoding, collate, ctype, default_acl = conn.execute(_DATABASE_SQL).fetchone()
    record: dict = {"owner": owner, "encoding": encoding, "collate": collate, "ctype": ctype}
    if server_num >= 150000:
        column = "datlocale" if server_num >= 170000 else "daticulocale"
        provider, locale = conn.execute(
            f"SELECT datlocprovider::text, {column} FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        record["locale_provider"] = {"c": "libc", "i": "icu", "b": "builtin"}.get(provider, "libc")
        record["locale"] = locale
    record["acl"] = None if default_acl else _acl_items(conn.execute(_DATABASE_ACL_SQL).fetchall())
    record["settings"] = [{"role": role, "config": list(config)} for role, config in conn.execute(_SETTINGS_SQL)]
    return record


def _acl_items(rows) -> list[dict]:
    """aclexplode's rows grouped back into ACL items, in the ACL's own order (a replay keeps it)."""
    items: dict[tuple, dict] = {}
    for grantor, grantee, privilege, grantable in rows:
        item = items.setdefault((grantor, grantee), {"grantor": grantor, "grantee": grantee, "privileges": []})
        item["privileges"].append([privilege, bool(grantable)])
    return list(items.values())


def named_roles(conn, properties: dict) -> dict[str, list[str]]:
    """Role → what the backup uses it for; predefined pg_* roles exist on every server and are left out."""
    uses: dict[str, set[str]] = {}
    for role, deptype in conn.execute(_SHDEPEND_SQL).fetchall():
        uses.setdefault(role, set()).add(_DEPTYPE_USE.get(deptype, GRANTEE))
    for (role,) in conn.execute(_BOOTSTRAP_OWNS_SQL).fetchall():
        uses.setdefault(role, set()).add(OWNER)
    uses.setdefault(properties["owner"], set()).add(DATABASE_OWNER)
    for item in properties.get("acl") or []:
        for role in (item["grantee"], item["grantor"]):
            if role is not None:
                uses.setdefault(role, set()).add(DATABASE_GRANTEE)
    for setting in properties["settings"]:
        if setting["role"] is not None:
            uses.setdefault(setting["role"], set()).add(SETTING)
    return {role: sorted(kinds) for role, kinds in sorted(uses.items()) if not role.startswith("pg_")}


def role_definitions(conn, roles) -> bytes:
    """The named roles as JSON (attributes and memberships, never passwords): the roles object of a backup."""
    keys = ("name", "superuser", "inherit", "createrole", "createdb", "login", "replication", "bypassrls")
    definitions = []
    for row in conn.execute(_ROLE_DEFINITIONS_SQL, (list(roles),)).fetchall():
        definition = dict(zip(keys, row[:8], strict=True))
        definition.update(connection_limit=row[8], valid_until=row[9], member_of=list(row[10]))
        definitions.append(definition)
    return json.dumps({"roles": definitions}, indent=2, sort_keys=True).encode()


# ---- restoring --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivilegeChoices:
    """How a restore treats owners and privileges: skip them, rename roles, or create missing roles."""

    no_owner: bool = False
    no_acl: bool = False
    role_map: dict[str, str] = field(default_factory=dict)
    create_roles: bool = False

    @classmethod
    def parse(
        cls, no_owner: bool = False, no_acl: bool = False, role_map=(), create_roles: bool = False
    ) -> PrivilegeChoices:
        return cls(no_owner, no_acl, parse_role_map(role_map), create_roles)

    def skips(self, uses) -> bool:
        """Whether every use of a role is left out by --no-owner / --no-acl (a policy never is)."""
        skipped = (_OWNER_USES if self.no_owner else set()) | (_ACL_USES if self.no_acl else set())
        if self.no_owner and self.no_acl:
            skipped |= {SETTING}
        return set(uses) <= skipped

    def role(self, name: str) -> str:
        return self.role_map.get(name, name)


def parse_role_map(pairs) -> dict[str, str]:
    """['old=new', ...] (or a dict) → {old: new}; refuses anything else, naming it."""
    if isinstance(pairs, dict):
        pairs = [f"{k}={v}" for k, v in pairs.items()]
    mapping: dict[str, str] = {}
    for pair in pairs or ():
        old, sep, new = str(pair).partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigurationError(
                f"--role-map '{str(pair)[:80]}' is not OLD=NEW: give the backup's role name and the role of this "
                "server that takes its place, for example --role-map shop_owner=app_owner"
            )
        if old.strip() in mapping:
            raise ConfigurationError(f"--role-map names role '{old.strip()}' twice")
        mapping[old.strip()] = new.strip()
    return mapping


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
            problems.append(f"role {name}: {_first_line(error)}")
    for name in created:
        for group in saved[name]["member_of"]:
            if group not in created:  # only among the roles just created: never into a role that holds powers
                problems.append(f"role {name}: not made a member of {group} (grant that by hand if it needs it)")
                continue
            try:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))
            except Exception as error:
                problems.append(f"GRANT {group} TO {name}: {_first_line(error)}")
    if created:
        log(
            f"created roles {', '.join(created)} from the roles saved with the backup, without passwords: set one "
            "(ALTER ROLE ... PASSWORD) for each that logs in"
        )
    return problems


# The header pg_restore writes before every archive entry in its SQL output.
_ENTRY_HEADER = re.compile(
    r"^-- Name: (?P<name>.*); Type: (?P<type>[A-Z ]+); Schema: (?P<schema>.*); Owner: (?P<owner>.*)$"
)
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_OWNER_LINE = re.compile(rf"^ALTER .+ OWNER TO (?P<role>{_IDENT});$")
_SESSION_SETTING = re.compile(r"^(SET [a-z_]+ = .*;|SELECT pg_catalog\.set_config\(.*\);)$")
_FOR_ROLE = re.compile(rf"^(?P<head>ALTER DEFAULT PRIVILEGES FOR ROLE )(?P<role>{_IDENT})(?P<tail> .*)$")
_OWNER_OR_AUTHORIZATION = re.compile(
    rf"^(?P<head>ALTER .+ OWNER TO |SET SESSION AUTHORIZATION )(?P<role>{_IDENT})(?P<tail>;)$"
)
_GRANTEE_AT_END = re.compile(
    rf"^(?P<head>.* (?:TO|FROM) )(?P<role>{_IDENT})(?P<tail>(?: WITH GRANT OPTION| CASCADE)?;)$"
)


@dataclass
class PrivilegeScript:
    """The archive's ownership and privilege statements, in the order pg_restore would run them."""

    owners: list[str] = field(default_factory=list)
    acls: list[str] = field(default_factory=list)  # one entry (possibly several statements) each

    @property
    def empty(self) -> bool:
        return not self.owners and not self.acls


def privilege_script(schema_sql: str) -> PrivilegeScript:
    """Splits `pg_restore --schema-only -f -` output into ownership statements and ACL entries.

    pg_restore ends each object's entry with its `ALTER ... OWNER TO <the entry's owner>;`: only that last
    statement counts, so a line of the same shape inside a function body is never taken for one."""
    script = PrivilegeScript()
    kind, owner, body = None, None, []

    def close() -> None:
        # pg_restore sets session settings (SET default_tablespace ...) for the next entry before its header.
        lines = [line for line in body if line.strip() and not _SESSION_SETTING.match(line)]
        if kind in ("ACL", "DEFAULT ACL"):
            if lines:
                script.acls.append("\n".join(lines))
        elif lines and (match := _OWNER_LINE.match(lines[-1])) and _unquote(match["role"]) == owner:
            script.owners.append(lines[-1])

    for line in schema_sql.splitlines():
        header = _ENTRY_HEADER.match(line)
        if header:
            close()
            kind, owner, body = header["type"], header["owner"], []
            continue
        if not line.startswith("--") and not line.startswith("\\"):
            body.append(line)
    close()
    return script


def map_roles(statement: str, role_map: dict[str, str]) -> str:
    """`statement` with the roles it names as owner, grantee, grantor or FOR ROLE renamed by `role_map`."""
    if not role_map:
        return statement
    return "\n".join(_map_line(line, role_map) for line in statement.splitlines())


def _map_line(line: str, role_map: dict[str, str]) -> str:
    def swap(match) -> str:
        name = _unquote(match["role"])
        role = _quote_ident(role_map[name]) if name in role_map else match["role"]
        return match["head"] + role + match["tail"]

    if match := _FOR_ROLE.match(line):
        line = swap(match)
    if match := _OWNER_OR_AUTHORIZATION.match(line):
        return swap(match)
    if line.startswith(("GRANT ", "REVOKE ", "ALTER DEFAULT PRIVILEGES ")) and (match := _GRANTEE_AT_END.match(line)):
        return swap(match)
    return line


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
            text = text.replace(_quote_ident(shown[0]), _quote_ident(shown[1]))
        result.not_applied.append(f"{' '.join(text.split())} ({_first_line(error)})")
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
