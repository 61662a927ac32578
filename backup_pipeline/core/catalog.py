"""What backups a database has: one listing of the storage prefix, no object reads.

Size comes from the dump object, age from the name's timestamp, completeness from the manifest's
presence and verification from the marker's presence, so listing 10,000 backups is a few list calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from backup_pipeline.core.encryption import EncryptionKey
from backup_pipeline.core.errors import BackupError, BackupNotFoundError
from backup_pipeline.core.manifest import Manifest
from backup_pipeline.core.names import BACKUP_TYPES, BackupName, classify_any_key, classify_key, join_key
from backup_pipeline.core.storage import BackupStorage, StoredObject

# Manifests read at once when a listing shows labels (each read is one small GET).
MANIFEST_READ_CONCURRENCY = 16
# Backups a person labels (before a migration, by hand); scheduled daily ones carry none, so are not read.
LABELLED_TYPES = ("pre-migration", "manual")
# A backup stamped later than now by more than this came from a clock that was wrong (or was made to look new):
# `latest` never picks it, and listings say it is in the future. Enough for clocks a few minutes apart.
FUTURE_SKEW = timedelta(minutes=5)


@dataclass
class BackupEntry:
    name: BackupName
    dump: StoredObject | None = None
    manifest_key: str | None = None
    verified_key: str | None = None
    keys: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.dump is not None and self.manifest_key is not None

    @property
    def verified(self) -> bool:
        return self.complete and self.verified_key is not None

    @property
    def created_at(self) -> datetime:
        return self.name.id.created_at

    @property
    def type(self) -> str:
        return self.name.id.type

    def in_future(self) -> bool:
        """Whether its timestamp lies ahead of now by more than the clock skew tolerated."""
        return self.created_at - datetime.now(UTC) > FUTURE_SKEW

    @property
    def size_bytes(self) -> int:
        return self.dump.size if self.dump else 0

    def as_dict(self) -> dict:
        return {
            "name": str(self.name),
            "key": self.dump.key if self.dump else None,
            "type": self.type,
            "size_bytes": self.size_bytes,
            "created_at": self.created_at.isoformat(),
            "verified": self.verified,
            "in_future": self.in_future(),
        }


class BackupCatalog:
    def __init__(
        self, storage: BackupStorage, storage_prefix: str, name_prefix: str, encryption: EncryptionKey | None = None
    ):
        self.storage = storage
        self.storage_prefix = storage_prefix
        self.name_prefix = name_prefix
        # New backups are encrypted with this key; encrypted backups are decrypted with it. Listing needs none.
        self.encryption = encryption

    def entries(self) -> list[BackupEntry]:
        """Every backup of ours, complete or not, newest first."""
        # Only names of our own shape: one listing per backup type, manifests and markers by name only.
        prefixes = [join_key(self.storage_prefix, f"{self.name_prefix}_{kind}_") for kind in BACKUP_TYPES]
        objects = self.storage.list_names(prefixes, rollup=".json")
        return group_objects(objects, self.storage_prefix, self.name_prefix)

    def complete(self, backup_type: str | None = None) -> list[BackupEntry]:
        return [e for e in self.entries() if e.complete and (backup_type is None or e.type == backup_type)]

    def find(self, name: BackupName) -> BackupEntry:
        dump = self.storage.head(name.dump_key(self.storage_prefix))
        manifest = self.storage.head(name.manifest_key(self.storage_prefix))
        if dump is None and manifest is None:
            raise BackupNotFoundError(
                f"there is no backup named {name} in {self.storage.describe()} (run `backup-db list`)"
            )
        if manifest is None:
            raise BackupNotFoundError(
                f"{name} has no manifest: its upload never finished, so it is not a backup and cannot be "
                "verified or restored (retention removes it)"
            )
        if dump is None:
            raise BackupError(f"{name} has a manifest but its dump object is missing from {self.storage.describe()}")
        verified = self.storage.head(name.verified_key(self.storage_prefix))
        return BackupEntry(
            name=name, dump=dump, manifest_key=manifest.key, verified_key=verified.key if verified else None
        )

    def look_up(self, name: BackupName) -> BackupEntry:
        """The backup as its objects stand now, each read directly by name (HEAD), not as a listing saw them: a
        listing may leave out an object that exists, and nothing is deleted on that one observation. `keys` holds
        every object of it found, the roles it saved among them."""
        found = {
            kind: self.storage.head(key)
            for kind, key in (
                ("dump", name.dump_key(self.storage_prefix)),
                ("manifest", name.manifest_key(self.storage_prefix)),
                ("verified", name.verified_key(self.storage_prefix)),
                ("roles", name.roles_key(self.storage_prefix)),
            )
        }
        return BackupEntry(
            name=name,
            dump=found["dump"],
            manifest_key=found["manifest"].key if found["manifest"] else None,
            verified_key=found["verified"].key if found["verified"] else None,
            keys=[obj.key for obj in found.values() if obj is not None],
        )

    def manifests(self, entries: Iterable[BackupEntry]) -> dict[str, Manifest]:
        """The manifests of complete `entries`, read at once; an unreadable one is left out (info names why)."""
        wanted = [e for e in entries if e.manifest_key]
        if not wanted:
            return {}

        def read(entry: BackupEntry) -> tuple[str, Manifest | None]:
            try:
                manifest = Manifest.from_json(self.storage.read_bytes(entry.manifest_key), entry.manifest_key)
                dump_key = entry.manifest_key.removesuffix(".json")
                return str(entry.name), manifest.check_describes(
                    str(entry.name), str(entry.name.id), dump_key, entry.manifest_key
                )
            except BackupError:
                return str(entry.name), None

        with ThreadPoolExecutor(max_workers=min(len(wanted), MANIFEST_READ_CONCURRENCY)) as pool:
            return {name: manifest for name, manifest in pool.map(read, wanted) if manifest is not None}

    def manifest(self, name: BackupName) -> Manifest:
        key = name.manifest_key(self.storage_prefix)
        if self.storage.head(key) is None:
            self.find(name)  # raises the more precise error
        manifest = Manifest.from_json(self.storage.read_bytes(key), key)
        # Bound to its own name: a manifest copied onto another name must not vouch for a dump it never saw.
        return manifest.check_describes(str(name), str(name.id), name.dump_key(self.storage_prefix), key)


def all_databases_entries(storage: BackupStorage, storage_prefix: str) -> list[BackupEntry]:
    """Every database's backups under `storage_prefix` (any name prefix of our shape), by database, newest first."""
    objects = storage.list_names([join_key(storage_prefix, "")], rollup=".json")
    entries = group_objects(objects, storage_prefix, None)
    return sorted(entries, key=lambda e: (e.name.prefix, -e.created_at.timestamp()))


def group_objects(objects: Iterable[StoredObject], storage_prefix: str, name_prefix: str | None) -> list[BackupEntry]:
    """`name_prefix` None: backups of every database."""
    entries: dict[BackupName, BackupEntry] = {}
    for obj in objects:
        if name_prefix is None:
            classified = classify_any_key(obj.key, storage_prefix)
        else:
            classified = classify_key(obj.key, storage_prefix, name_prefix)
        if classified is None:
            continue
        name, kind = classified
        entry = entries.get(name)
        if entry is None:
            entry = entries[name] = BackupEntry(name=name)
        entry.keys.append(obj.key)
        if kind == "dump":
            entry.dump = obj
        elif kind == "manifest":
            entry.manifest_key = obj.key
        elif kind == "verified":
            entry.verified_key = obj.key
    return sorted(entries.values(), key=lambda e: e.created_at, reverse=True)
