"""What a backup records of owners, privileges and the database's own properties, read from the catalog in the
dump's snapshot: the manifest's `database_properties` and `roles`, and the saved roles object."""

from __future__ import annotations

import json

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
