"""The archive's ownership and privilege statements, read from pg_restore's SQL output, and the roles they
name renamed by a role map."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
        role = quote_ident(role_map[name]) if name in role_map else match["role"]
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


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
