"""What changed in a database's schema since a backup: what rolling back to that backup would undo.

Both sides are read as pg_dump prints them, with one client: the backup's archive through `pg_restore
--schema-only --create --file=-` (no server involved, no database created) and the live database through
`pg_dump --schema-only --create`. So every kind of object pg_dump dumps is compared (tables, columns, types and
enum values, sequences, extensions, schemas, owners, privileges, policies, triggers, functions, defaults,
comments, the database's own settings...), not a list we chose; a kind we do not name is still compared, under
"other". Each side is split into pg_dump's own entries (its `-- Name: ...; Type: ...` headers) and compared
entry by entry; tables are further split into columns and constraints, so a change names the column.
"""

from __future__ import annotations

import difflib
import re
import time
from dataclasses import dataclass, field

from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.dump import schema_sql
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.catalog import server_version
from backup_pipeline.core.postgres.clients import ClientTools, PgClient
from backup_pipeline.core.restore import Log, archive_schema_sql
from backup_pipeline.core.stored_backup import checked_manifest

# The kinds a difference is reported under, in the order shown. The first five are those of earlier versions
# (their --json keys stay); "other" takes any entry type not named here, so nothing pg_dump prints is skipped.
KINDS = (
    "tables",
    "columns",
    "indexes",
    "constraints",
    "functions",
    "types",
    "sequences",
    "extensions",
    "schemas",
    "owners",
    "privileges",
    "policies",
    "triggers",
    "comments",
    "database",
    "other",
)
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
# What diff never compares, said in every answer so that "no differences" is never read as more than it is.
NOT_COMPARED = (
    "table rows (diff compares the schema only)",
    "roles, tablespaces and other objects of the whole server (not in a database's dump)",
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
_ENCODING = re.compile(r"^SET client_encoding = '([^']+)';$", re.MULTILINE)
# PostgreSQL's encoding names where Python's differ; SQL_ASCII's bytes have no declared encoding, and LATIN1
# reads each byte as one character, so nothing is lost and equal bytes compare equal.
_PYTHON_CODECS = {
    "SQL_ASCII": "latin-1",
    "LATIN1": "latin-1",
    "UTF8": "utf-8",
    "EUC_JP": "euc_jp",
    "EUC_CN": "gb2312",
    "EUC_KR": "euc_kr",
    "SJIS": "shift_jis",
    "BIG5": "big5",
    "GBK": "gbk",
    "UHC": "cp949",
    "GB18030": "gb18030",
    "KOI8R": "koi8_r",
    "KOI8U": "koi8_u",
    "ISO_8859_5": "iso8859_5",
    "ISO_8859_6": "iso8859_6",
    "ISO_8859_7": "iso8859_7",
    "ISO_8859_8": "iso8859_8",
    **{f"LATIN{n}": f"iso8859_{m}" for n, m in ((2, 2), (3, 3), (4, 4), (5, 9), (6, 10), (7, 13), (8, 14))},
    "LATIN9": "iso8859_15",
    "LATIN10": "iso8859_16",
    **{f"WIN{n}": f"cp{n}" for n in (866, 874, 1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258)},
}


@dataclass(frozen=True)
class SchemaEntry:
    kind: str
    name: str
    table: str | None  # the table it belongs to (columns, indexes, constraints), for a table added or dropped whole
    definition: str


@dataclass
class Change:
    name: str
    backup: str | None  # its definition in the backup; None: the backup does not have it
    live: str | None  # its definition in the live database; None: the live database does not have it


@dataclass
class KindDiff:
    added: list[Change] = field(default_factory=list)  # in the live database only: a rollback removes them
    removed: list[Change] = field(default_factory=list)  # in the backup only: a rollback brings them back
    changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class SchemaDiff:
    manifest: Manifest
    live_database: str
    kinds: dict[str, KindDiff]
    duration_s: float
    pg_dump_version: str = ""  # of the client that read both sides
    notes: list[str] = field(default_factory=list)  # what the reader must know to trust the answer

    @property
    def empty(self) -> bool:
        return all(k.empty for k in self.kinds.values())

    def as_dict(self) -> dict:
        return {
            "backup": self.manifest.name,
            "label": self.manifest.label,
            "live_database": self.live_database,
            "identical": self.empty,
            **{
                kind: {
                    "added": [{"name": c.name, "live": c.live} for c in diff.added],
                    "removed": [{"name": c.name, "backup": c.backup} for c in diff.removed],
                    "changed": [{"name": c.name, "backup": c.backup, "live": c.live} for c in diff.changed],
                }
                for kind, diff in self.kinds.items()
            },
            "compared": list(self.kinds),
            "not_compared": list(NOT_COMPARED),
            "notes": self.notes,
            "pg_dump_version": self.pg_dump_version,
            "backup_pg_dump_version": self.manifest.pg_dump_version,
            "duration_s": self.duration_s,
        }


def decode_dump(sql: bytes) -> str:
    """pg_dump's output as text, read in the encoding it declares (its `SET client_encoding`)."""
    declared = _ENCODING.search(sql[:4096].decode("ascii", "replace"))
    codec = _PYTHON_CODECS.get(declared.group(1).upper() if declared else "UTF8", "utf-8")
    return sql.decode(codec, errors="replace")


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
        return entries + _table_entries(name, entry_type, body)
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


def _table_entries(name: str, entry_type: str, body: str) -> list[SchemaEntry]:
    """A table as its own line (its kind and options) plus one line per column and per inline constraint."""
    opening = re.match(
        r"^CREATE (?:UNLOGGED )?(?:FOREIGN )?TABLE \S+(?: (?:OF|PARTITION OF) \S+)? \($", body.split("\n")[0]
    )
    close = body.rfind("\n)")
    if not opening or close < 0:
        return [SchemaEntry("tables", name, None, body)]  # a shape we do not split: compared whole
    words = "partitioned table" if "\nPARTITION BY " in body[close:] else entry_type.lower()
    if body.startswith("CREATE UNLOGGED"):
        words = f"unlogged {words}"
    options = " ".join(body[close + 2 :].rstrip(";").split())
    entries = [SchemaEntry("tables", name, None, f"{words} {options}".strip())]
    for line in _column_lines(body[len(body.split("\n")[0]) + 1 : close]):
        if line.startswith("CONSTRAINT "):
            _, constraint, definition = line.split(" ", 2)
            entries.append(SchemaEntry("constraints", f"{name}.{_unquote(constraint)}", name, definition))
        else:
            column, definition = _split_identifier(line)
            entries.append(SchemaEntry("columns", f"{name}.{column}", name, definition))
    return entries


def _column_lines(text: str) -> list[str]:
    """The column list of pg_dump's CREATE TABLE: one item per 4-space-indented line (continuations joined)."""
    items: list[str] = []
    for line in text.split("\n"):
        if line.startswith("    ") and not line.startswith("     ") or not items:
            items.append(line.strip())
        else:
            items[-1] += "\n" + line
    return [item.rstrip(",") for item in items if item]


def _split_identifier(line: str) -> tuple[str, str]:
    found = re.match(r'^("(?:[^"]|"")+"|\S+)\s*(.*)$', line, re.DOTALL)
    return (_unquote(found.group(1)), found.group(2)) if found else (line, "")


def _unquote(identifier: str) -> str:
    if identifier.startswith('"') and identifier.endswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


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


def compare_entries(
    backup: dict[tuple[str, str], SchemaEntry], live: dict[tuple[str, str], SchemaEntry]
) -> dict[str, KindDiff]:
    """Entry by entry. Columns, indexes and constraints of a table added or dropped whole are not listed again:
    the table's line says it; nor is the owner of an object that is itself added or dropped."""
    only_one_side = set(backup) ^ set(live)
    whole = {name for (kind, name) in only_one_side if kind == "tables"}
    gone_or_new = {name for (_kind, name) in only_one_side}
    kinds = {kind: KindDiff() for kind in KINDS}
    for key in sorted(set(backup) | set(live), key=lambda k: (KINDS.index(k[0]), k[1])):
        before, after = backup.get(key), live.get(key)
        entry = before or after
        if entry.kind in ("columns", "indexes", "constraints") and entry.table in whole:
            continue
        if entry.kind == "owners" and (before is None or after is None):
            continue
        if entry.name.endswith(")") and " (" in entry.name and entry.name.rsplit(" (", 1)[0] in gone_or_new:
            continue  # a second entry of an object added or dropped whole (its OWNED BY, its ROW SECURITY)
        diff = kinds[entry.kind]
        if before is None:
            diff.added.append(Change(entry.name, None, after.definition))
        elif after is None:
            diff.removed.append(Change(entry.name, before.definition, None))
        elif before.definition != after.definition:
            diff.changed.append(Change(entry.name, before.definition, after.definition))
    return kinds


def entries_from_dump(sql: bytes) -> dict[tuple[str, str], SchemaEntry]:
    return _merge_defaults(schema_entries(decode_dump(sql)))


def line_changes(before: str | None, after: str | None) -> list[str]:
    """The lines that differ between two definitions, as `- old` and `+ new` (trailing commas ignored, so an
    enum value added at the end shows as one line)."""
    old = [line.strip().rstrip(",") for line in (before or "").splitlines() if line.strip()]
    new = [line.strip().rstrip(",") for line in (after or "").splitlines() if line.strip()]
    return [
        f"{line[0]} {line[1:].strip()}"
        for line in difflib.unified_diff(old, new, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def schema_client(tools: ClientTools, manifest: Manifest, live: PostgresTarget, server_text: str) -> PgClient:
    """One client for both sides: a pg_restore that reads the archive and a pg_dump that dumps the live server,
    of the archive's major when it can (then both sides print objects alike)."""
    major = int(server_text.split(".")[0])
    client = tools.for_archive(
        manifest.pg_dump_version, manifest.compression, manifest.name, server_major=major, needs_ssl=live.needs_ssl
    )
    if client.major < major:
        client = tools.for_server(major, server_text, live.needs_ssl)
        if client.major < int(manifest.pg_dump_version.split(".")[0]):
            raise BackupError(
                f"no PostgreSQL client here both reads {manifest.name} (written by pg_dump "
                f"{manifest.pg_dump_version}) and dumps the live server (PostgreSQL {server_text})"
            )
    return client


def diff_backup_schema(
    catalog: BackupCatalog,
    name: BackupName,
    live: PostgresTarget,
    tools: ClientTools | None = None,
    log: Log = print,
) -> SchemaDiff:
    """The schema difference between backup `name` and the live database `live`. Read-only on both sides."""
    tools = tools or ClientTools.locate()
    started = time.monotonic()
    manifest = checked_manifest(catalog, name)
    with live.connect() as conn:
        server_text = server_version(conn)[1]
    client = schema_client(tools, manifest, live, server_text)
    log(f"reading the schema of {name} with pg_restore {client.describe()}")
    then = entries_from_dump(archive_schema_sql(catalog, manifest, client))
    log(f"reading the schema of {live.describe()} with pg_dump {client.describe()}")
    now = entries_from_dump(schema_sql(live, client))
    notes = []
    if manifest.pg_dump_version.split(".")[0] != client.version.split(".")[0]:
        notes.append(
            f"the backup was written by pg_dump {manifest.pg_dump_version} and the live schema is read with pg_dump "
            f"{client.version}: where the two versions print an object differently, it shows as changed"
        )
    if not any(e.kind == "privileges" for e in then.values()) and any(e.kind == "privileges" for e in now.values()):
        notes.append(
            "the backup holds no privileges (GRANT/REVOKE): backups taken with --no-acl, as earlier versions of this "
            "tool took them, hold none, so every privilege of the live database shows as added"
        )
    return SchemaDiff(
        manifest=manifest,
        live_database=live.dbname,
        kinds=compare_entries(then, now),
        duration_s=round(time.monotonic() - started, 3),
        pg_dump_version=client.version,
        notes=notes,
    )
