"""How pg_dump is asked to dump: archive format, parallel jobs and compression.

Plain Python with no Dagster or database import, so settings.py can check the values when it reads them.
Syntax is checked when the configuration is read; whether the installed pg_dump supports a method (lz4
and zstd need pg_dump 16 or newer) is checked just before dumping, when its version is known.
"""

from __future__ import annotations

from dataclasses import dataclass

from backup_pipeline.core.errors import ConfigurationError

FORMATS = ("custom", "directory")
MAX_JOBS = 64
# Compression methods and the levels pg_dump accepts for each; gzip works with every pg_dump.
LEVELS = {"gzip": (0, 9), "lz4": (1, 12), "zstd": (1, 22)}
NEWER_METHODS_SINCE = 16  # pg_dump 16 added lz4 and zstd to --compress


@dataclass(frozen=True)
class Compression:
    method: str  # gzip, lz4, zstd or none
    level: int | None = None  # None: the method's own default

    @classmethod
    def parse(cls, text: str | None, where: str | None = "BACKUP_COMPRESSION") -> Compression | None:
        """'6', 'gzip', 'gzip:9', 'lz4', 'zstd:3', 'none' or '0'; None for unset or 'default' (DEFAULT_COMPRESSION).

        A bare 'gzip' is pg_dump's own default level (6). `where` None: messages leave the setting's name out."""
        named = f"{where} " if where else ""
        value = (text or "").strip().lower()
        if value in ("", "default"):
            return None
        if value in ("none", "0", "gzip:0"):
            return cls("none")
        method, _, level_text = value.partition(":")
        if method.isdigit() and not level_text:
            method, level_text = "gzip", method
        if method not in LEVELS:
            raise ConfigurationError(
                f"{named}'{text}' is not a compression: use gzip:N (N from 0 to 9, works with every pg_dump), "
                "a bare level such as 6, none, or with pg_dump 16 or newer lz4[:N] or zstd[:N]"
            )
        if not level_text:
            return cls(method)
        low, high = LEVELS[method]
        if not level_text.isdigit() or not low <= int(level_text) <= high:
            raise ConfigurationError(f"{named}'{text}': the {method} level must be a whole number from {low} to {high}")
        return cls(method, int(level_text))

    def __str__(self) -> str:
        return self.method if self.level is None else f"{self.method}:{self.level}"

    def pg_dump_value(self, pg_dump_major: int, pg_dump_text: str) -> str | None:
        """The --compress value this pg_dump understands; None leaves pg_dump's own default (gzip 6) alone."""
        if pg_dump_major >= NEWER_METHODS_SINCE:
            return str(self)
        if self.method in ("lz4", "zstd"):
            raise ConfigurationError(
                f"BACKUP_COMPRESSION '{self}' needs pg_dump {NEWER_METHODS_SINCE} or newer, but the pg_dump in use is "
                f"{pg_dump_text}: use gzip:N (0 to 9) instead, or install a newer PostgreSQL client and point "
                "BACKUP_PG_BIN_DIR at it. Nothing was dumped"
            )
        if self.method == "none":
            return "0"
        return None if self.level is None else str(self.level)  # older pg_dump spells gzip:N as N


# When BACKUP_COMPRESSION is unset, on every pg_dump version: measured in bench/README.md ("Compression with
# pg_dump 18"), gzip level 1 dumps about 3 times faster than pg_dump's own default (gzip 6) for an 11 % larger
# object, verifies as fast, and every pg_restore reads it (lz4 and zstd are build options many clients lack).
DEFAULT_COMPRESSION = Compression("gzip", 1)


@dataclass(frozen=True)
class DumpOptions:
    """format custom (one stream) or directory (parallel pg_dump -j, stored as one tar object)."""

    format: str = "custom"
    jobs: int = 1
    compression: Compression | None = None  # None: DEFAULT_COMPRESSION

    def __post_init__(self) -> None:
        if isinstance(self.compression, str):
            object.__setattr__(self, "compression", Compression.parse(self.compression))
        if self.compression is None:
            object.__setattr__(self, "compression", DEFAULT_COMPRESSION)
        check_format(self.format)
        check_jobs(self.jobs, self.format)

    def pg_dump_args(self, pg_dump_major: int, pg_dump_text: str) -> list[str]:
        # Owners and privileges stay in the archive: whether a restore applies them is decided when restoring.
        args = [f"--format={self.format}"]
        if self.format == "directory":
            # The folder is only staging on the way to storage: no need for pg_dump to fsync it.
            args += [f"--jobs={self.jobs}", "--no-sync"]
        value = self.compression.pg_dump_value(pg_dump_major, pg_dump_text)
        return args + ([f"--compress={value}"] if value is not None else [])

    @property
    def description(self) -> str:
        """What the manifest records as `compression`."""
        return str(self.compression)


def check_format(value: str, where: str | None = "BACKUP_DUMP_FORMAT") -> str:
    if value not in FORMATS:
        named = f"{where} " if where else ""
        raise ConfigurationError(
            f"{named}'{value}' is not a dump format: use custom (one pg_dump stream, the default) or directory "
            "(parallel pg_dump with BACKUP_DUMP_JOBS, stored as one tar object)"
        )
    return value


def check_jobs(jobs: int, dump_format: str, where: str = "BACKUP_DUMP_JOBS") -> int:
    if not 1 <= jobs <= MAX_JOBS:
        raise ConfigurationError(f"{where} must be from 1 to {MAX_JOBS}, got {jobs}")
    if jobs > 1 and dump_format != "directory":
        raise ConfigurationError(
            f"{where}={jobs} needs BACKUP_DUMP_FORMAT=directory: pg_dump runs in parallel only in the directory format"
        )
    return jobs
