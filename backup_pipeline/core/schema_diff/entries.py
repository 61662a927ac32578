"""pg_dump's output split into comparable entries: one per `-- Name: ...; Type: ...` header, named as a person
reads it, with the owners of owned objects as entries of their own."""

from __future__ import annotations

import re

from backup_pipeline.core.schema_diff.dump_encoding import decode_dump
from backup_pipeline.core.schema_diff.entry import SchemaEntry
from backup_pipeline.core.schema_diff.tables import table_entries

# The kind each of pg_dump's entry types is reported under (KINDS); a type not named here is "other".
_KIND_OF_TYPE = {
    "TABLE": "tables",
    "VIEW": "tables",
    "MATERIALIZED VIEW": "tables",
    "FOREIGN TABLE": "tables",
    "INDEX": "indexes",
    "INDEX ATTACH": "indexes",
    "CONSTRAINT": "constraints",
    "FK CONSTRAINT": "constraints",
    "CHECK CONSTRAINT": "constraints",
    "FUNCTION": "functions",
    "PROCEDURE": "functions",
    "AGGREGATE": "functions",
    "TYPE": "types",
    "DOMAIN": "types",
    "SEQUENCE": "sequences",
    "SEQUENCE OWNED BY": "sequences",
    "EXTENSION": "extensions",
    "SCHEMA": "schemas",
    "ACL": "privileges",
    "DEFAULT ACL": "privileges",
    "POLICY": "policies",
    "ROW SECURITY": "policies",
    "TRIGGER": "triggers",
    "EVENT TRIGGER": "triggers",
    "RULE": "triggers",
    "COMMENT": "comments",
    "SECURITY LABEL": "comments",
    "DATABASE": "database",
    "DATABASE PROPERTIES": "database",
}
# Entry types whose name is "<table> <object>" (pg_dump's tag for objects that belong to a table).
_TABLE_OBJECT_TYPES = frozenset(
    {"TRIGGER", "POLICY", "CONSTRAINT", "FK CONSTRAINT", "CHECK CONSTRAINT", "DEFAULT", "RULE"}
)
# Entry types that sit beside another entry of the same object (a sequence's OWNED BY, a table's ROW SECURITY).
_SECOND_ENTRY_TYPES = frozenset({"DATABASE PROPERTIES", "SEQUENCE OWNED BY", "ROW SECURITY", "INDEX ATTACH"})
# Entry types with an owner of their own (the others, such as ACL or COMMENT entries, repeat their object's).
_OWNED_TYPES = frozenset(
    {
        "TABLE",
        "VIEW",
        "MATERIALIZED VIEW",
        "FOREIGN TABLE",
        "SEQUENCE",
        "FUNCTION",
        "PROCEDURE",
        "AGGREGATE",
        "TYPE",
        "DOMAIN",
        "SCHEMA",
        "DATABASE",
        "EVENT TRIGGER",
        "COLLATION",
        "CONVERSION",
        "OPERATOR",
        "OPERATOR CLASS",
        "OPERATOR FAMILY",
        "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY",
        "FOREIGN DATA WRAPPER",
        "SERVER",
        "PUBLICATION",
        "SUBSCRIPTION",
        "STATISTICS",
        "LARGE OBJECT",
    }
)
_HEADER = re.compile(
    r"^--\n-- (?:Data for )?Name: (?P<name>.*?); Type: (?P<type>.*?); Schema: (?P<schema>.*?); "
    r"Owner: (?P<owner>.*?)(?:; Tablespace: (?P<tablespace>.*?))?\n--\n",
    re.MULTILINE,
)
_END = "\n--\n-- PostgreSQL database dump complete\n--"
# pg_dump's session setup, printed again before entries (and after each \connect): not part of any object.
_SETUP_LINE = re.compile(
    r"^(SET (statement_timeout|lock_timeout|idle_in_transaction_session_timeout|transaction_timeout|"
    r"client_encoding|standard_conforming_strings|check_function_bodies|xmloption|client_min_messages|"
    r"row_security|default_tablespace|default_table_access_method|default_with_oids) = .*;|SELECT pg_catalog\.set_config\('search_path', "
    r"'', false\);|\\(connect|restrict|unrestrict)( .*)?)$"
)
_OWNER_LINE = re.compile(r"^ALTER .+ OWNER TO .+;$")


def schema_entries(sql: str) -> dict[tuple[str, str], SchemaEntry]:
    """pg_dump/pg_restore SQL as comparable entries, keyed by (kind, name). The database's own name is replaced
    by <database> (a backup is compared with a database of another name as readily as with its own)."""
    end = sql.find(_END)
    sql = sql if end < 0 else sql[:end]
    headers = list(_HEADER.finditer(sql))
    database = next((h["name"] for h in headers if h["type"] == "DATABASE"), None)
    entries: dict[tuple[str, str], SchemaEntry] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        body = sql[header.end() : following.start() if following else len(sql)]
        for entry in _entries_of(header, _clean(body), database):
            key = (entry.kind, entry.name)
            while key in entries:  # the same name twice (rare): keep both
                key = (key[0], key[1] + "'")
            entries[key] = entry
    return entries


def _clean(body: str) -> str:
    lines = [line.rstrip() for line in body.splitlines()]
    kept = [line for line in lines if not _SETUP_LINE.match(line) and not _OWNER_LINE.match(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _entries_of(header: re.Match, body: str, database: str | None) -> list[SchemaEntry]:
    entry_type, schema, raw_name = header["type"], header["schema"], header["name"]
    if database is not None and (entry_type.startswith("DATABASE") or raw_name == f"DATABASE {database}"):
        raw_name = raw_name.replace(database, "<database>")
        body = _replace_identifier(body, database, "<database>")
    name = _qualified(entry_type, schema, raw_name)
    if entry_type in ("FUNCTION", "PROCEDURE"):
        name = _function_name(body) or name
    if entry_type == "DEFAULT ACL":  # each role has default privileges of its own
        name = f"{name} FOR ROLE {header['owner']}"
    if entry_type in _SECOND_ENTRY_TYPES:  # beside an entry of the same name and kind: named apart from it
        name = f"{name} ({entry_type.lower()})"
    if header["tablespace"]:
        body += f"\n-- tablespace {header['tablespace']}"
    entries = []
    if entry_type in _OWNED_TYPES and header["owner"] not in ("", "-"):
        entries.append(SchemaEntry("owners", f"{entry_type.lower()} {name}", None, header["owner"]))
    if entry_type in ("TABLE", "FOREIGN TABLE"):
        return entries + table_entries(name, entry_type, body)
    if entry_type == "DEFAULT":  # joins its column's line (_merge_defaults)
        return entries + [SchemaEntry("defaults", name, name.rsplit(".", 1)[0], f"DEFAULT {_default_of(body)}")]
    kind = _KIND_OF_TYPE.get(entry_type, "other")
    table = None
    if kind == "indexes":
        found = re.search(r" ON (?:ONLY )?(\S+) ", body)
        table, definition = (found.group(1) if found else None), body.rstrip(";")
    elif kind == "constraints":
        table = name.rsplit(".", 1)[0]
        found = re.search(r"ADD CONSTRAINT \S+ (.*);\s*$", body, re.DOTALL)
        definition = " ".join(found.group(1).split()) if found else body
    elif entry_type in ("VIEW", "MATERIALIZED VIEW"):
        definition = f"{entry_type.lower()}: {body}"
    else:
        definition = body
    if kind == "other":
        name = f"{entry_type} {name}"
    return entries + [SchemaEntry(kind, name, table, definition)]


def _qualified(entry_type: str, schema: str, name: str) -> str:
    """The entry's name as a person reads it: public.orders, public.orders.orders_pkey, TABLE public.orders."""
    if schema in ("", "-"):
        return name
    if entry_type in _TABLE_OBJECT_TYPES and " " in name:
        table, _, item = name.partition(" ")
        return f"{schema}.{table}.{item}"
    if name.startswith("DEFAULT PRIVILEGES"):
        return f"{name} IN SCHEMA {schema}"
    prefixed = re.match(r"^((?:[A-Z]+ )+)(.+)$", name)  # ACL and COMMENT entries: "TABLE orders"
    if prefixed:
        return f"{prefixed.group(1)}{schema}.{prefixed.group(2)}"
    return f"{schema}.{name}"


def _function_name(body: str) -> str | None:
    """schema.name(arg names and types) from CREATE FUNCTION, without the arguments' defaults, as
    pg_get_function_identity_arguments spells it (pg_dump's own tag has the types only)."""
    found = re.match(r"^CREATE (?:FUNCTION|PROCEDURE) (\S+?)\(", body)
    if not found:
        return None
    depth, args, current, quoted = 1, [], "", False
    for char in body[found.end() :]:
        quoted = not quoted if char == "'" else quoted
        if not quoted and char in "()":
            depth += 1 if char == "(" else -1
            if depth == 0:
                break
        if not quoted and depth == 1 and char == ",":
            args.append(current)
            current = ""
            continue
        current += char
    else:
        return None
    args.append(current)
    kept = [re.split(r" DEFAULT | = ", arg.strip(), maxsplit=1)[0] for arg in args if arg.strip()]
    return f"{found.group(1)}({', '.join(kept)})"


def _default_of(body: str) -> str:
    found = re.search(r"ALTER COLUMN (?:\"(?:[^\"]|\"\")+\"|\S+) SET DEFAULT (.*);\s*$", body, re.DOTALL)
    return found.group(1) if found else body


def _replace_identifier(text: str, name: str, placeholder: str) -> str:
    quoted = name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'
    return re.sub(rf"(?<![\w$\"']){re.escape(quoted)}(?![\w$\"])", placeholder, text)


def _merge_defaults(entries: dict[tuple[str, str], SchemaEntry]) -> dict[tuple[str, str], SchemaEntry]:
    """A default pg_dump sets apart (ALTER COLUMN ... SET DEFAULT, for serial columns) joins its column's line."""
    merged = {key: entry for key, entry in entries.items() if entry.kind != "defaults"}
    for entry in entries.values():
        if entry.kind != "defaults":
            continue
        column = merged.get(("columns", entry.name))
        definition = f"{column.definition} {entry.definition}" if column else entry.definition
        merged[("columns", entry.name)] = SchemaEntry("columns", entry.name, entry.table, definition)
    return merged


def entries_from_dump(sql: bytes) -> dict[tuple[str, str], SchemaEntry]:
    return _merge_defaults(schema_entries(decode_dump(sql)))
