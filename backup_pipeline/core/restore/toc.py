"""What of an archive's table of contents the target's role may create: the rest is left out, and named."""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.environment import client_tools_environment
from backup_pipeline.core.restore.plan import Log
from backup_pipeline.core.streams import CHUNK_BYTES, counted

# Table-of-contents entries (as `pg_restore --list` names them) that only a superuser can create. A restore as
# another role leaves them out, names them, and stops at the first error in anything else.
SUPERUSER_ONLY = ("EVENT TRIGGER",)
# Never restored anywhere: a subscription would connect to its publisher from the copy (a scratch database or
# a restore), and PostgreSQL refuses to drop a database that has one.
NEVER_RESTORED = ("SUBSCRIPTION TABLE", "SUBSCRIPTION")
_KNOWN_KINDS = (
    *NEVER_RESTORED,
    "PUBLICATION TABLES IN SCHEMA",
    "PUBLICATION TABLE",
    "PUBLICATION",
    "EVENT TRIGGER",
    "EXTENSION",
    "COMMENT",
    "SECURITY LABEL",
)
_TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ (?P<rest>.*)$")


@dataclass(frozen=True)
class TargetRole:
    """What the role a restore connects as may create on its server."""

    name: str
    superuser: bool
    untrusted_extensions: frozenset[str]  # extensions only a superuser can create there

    @classmethod
    def of(cls, target: PostgresTarget) -> TargetRole:
        with target.connect() as conn:
            name, superuser = conn.execute(
                "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            untrusted = conn.execute(
                "SELECT DISTINCT name FROM pg_available_extension_versions WHERE superuser AND NOT trusted"
            ).fetchall()
        return cls(name, bool(superuser), frozenset(row[0] for row in untrusted))


def _entry_kind(line: str) -> tuple[str, list[str]] | None:
    """(kind, the fields after it: schema, name..., owner) of a `pg_restore --list` line of a kind we judge."""
    match = _TOC_ENTRY.match(line)
    if match is None:
        return None
    rest = match["rest"]
    for kind in _KNOWN_KINDS:
        if rest.startswith(kind + " "):
            return kind, rest[len(kind) + 1 :].split()
    return None


def filter_table_of_contents(toc: str, role: TargetRole) -> tuple[str, list[str]]:
    """The `--use-list` text without what `role` cannot create, and those objects named (e.g.
    `EVENT TRIGGER provider_ddl_audit`, `COMMENT ON EXTENSION plpython3u`).

    Left out: subscriptions always; for a role that is not a superuser also event triggers, extensions only a
    superuser may create (untrusted ones such as plpython3u, or pg_stat_statements), publications FOR ALL TABLES
    or FOR TABLES IN SCHEMA (the table of contents tells them by their lack of single-table members, so an
    empty publication is left out too), and comments on any of those.
    """
    entries = [(line, _entry_kind(line)) for line in toc.splitlines()]
    # PUBLICATION TABLE fields: schema, publication, table, owner.
    with_tables = {
        fields[1] for _, entry in entries if entry and entry[0] == "PUBLICATION TABLE" for fields in [entry[1]]
    }
    kept, left_out, left_out_objects = [], [], set()
    for line, entry in entries:
        if entry is None:
            kept.append(line)
            continue
        kind, fields = entry
        name = fields[1] if len(fields) > 1 else ""  # fields: schema ('-' for none), name, owner
        if kind in NEVER_RESTORED or (not role.superuser and _needs_superuser(kind, name, role, with_tables)):
            if kind != "PUBLICATION TABLES IN SCHEMA":  # a part of its publication, named once as that
                left_out.append(f"{kind} {name}")
                left_out_objects.add(f"{kind} {name}")
            continue
        if kind in ("COMMENT", "SECURITY LABEL"):
            on = " ".join(fields[1:])  # e.g. `EXTENSION plpython3u` or `EVENT TRIGGER audit <owner>`
            if any(on == obj or on.startswith(obj + " ") for obj in left_out_objects):
                left_out.append(f"{kind} ON {on.split(' ' + fields[-1])[0] if len(fields) > 3 else on}")
                continue
        kept.append(line)
    return "\n".join(kept) + "\n", left_out


def _needs_superuser(kind: str, name: str, role: TargetRole, with_tables: set[str]) -> bool:
    if kind in SUPERUSER_ONLY or kind == "PUBLICATION TABLES IN SCHEMA":
        return True
    if kind == "EXTENSION":
        return name in role.untrusted_extensions
    return kind == "PUBLICATION" and name not in with_tables


@dataclass
class TocFilter:
    """Per restore: reads the archive's table of contents and writes the `--use-list` file without what the
    target's role cannot create; `left_out` names those objects."""

    role: TargetRole
    client: object
    folder: Path
    left_out: list[str] = field(default_factory=list)

    def args_for(self, archive: str | None = None, stream=None) -> list[str]:
        """pg_restore's `--use-list` for the archive at `archive`, or read from the start of `stream` (a custom-
        format dump's table of contents is at its head); [] when nothing is left out, or when the table of
        contents cannot be read (the restore itself then says what is wrong with the archive)."""
        toc = list_archive(self.client, archive, stream)
        if toc is None:
            return []
        kept, self.left_out = filter_table_of_contents(toc, self.role)
        if not self.left_out:
            return []
        path = self.folder / "restore.list"
        path.write_text(kept)
        return [f"--use-list={path}"]

    def report(self, log: Log) -> None:
        if self.left_out:
            log(
                f"left out of the restore {counted(len(self.left_out), 'object')} that role {self.role.name} "
                f"{'must never restore' if self.role.superuser else 'cannot create (not a superuser)'}: "
                f"{', '.join(self.left_out)}"
            )


def list_archive(client, archive: str | None, stream) -> str | None:
    argv = [client.path("pg_restore"), "--list", *([archive] if archive else [])]
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stream is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=client_tools_environment(),
        )
        feeder = None
        if stream is not None:
            feeder = threading.Thread(target=_feed_until_closed, args=(stream, process.stdin), daemon=True)
            feeder.start()
        toc = process.stdout.read().decode(errors="replace")
        code = process.wait()
        if feeder is not None:
            feeder.join()
    return toc if code == 0 else None


def _feed_until_closed(source, sink) -> None:
    """Copies `source` into `sink` until either ends (pg_restore --list stops reading after the table of contents)."""
    try:
        while chunk := source.read(CHUNK_BYTES):
            sink.write(chunk)
    except Exception:  # pg_restore stopped reading, or the object could not be read: the restore itself says which
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            sink.close()
