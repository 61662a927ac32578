"""Client-side encryption of dumps: AES-256-GCM in chunks, streamed, so the dump never sits in memory or on disk.

Stored format (integers big-endian):

    header = MAGIC (8 bytes) + chunk size (u32) + salt (16 random bytes)
    then one sealed chunk after another: AES-256-GCM(plaintext chunk) followed by its 16-byte tag

Each object gets its own key, derived with HKDF-SHA256 from the configured key and the object's random salt,
so nonces (the chunk counter) never repeat under one key. Every chunk but the last holds exactly `chunk size`
bytes of plaintext; the last holds fewer (possibly none) and is sealed as final. The header, the chunk's
index and the final flag are authenticated with each chunk, so a truncated, reordered, extended or altered
object fails to decrypt instead of restoring silently wrong.

The manifest records the algorithm and a key id (a fingerprint that reveals nothing of the key), never the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from backup_pipeline.core.errors import ConfigurationError, VerificationError

KEY_ENV = "BACKUP_ENCRYPTION_KEY"
KEY_FILE_ENV = "BACKUP_ENCRYPTION_KEY_FILE"
ALGORITHM = "AES-256-GCM"
FORMAT = "backup_pipeline-chunked-v1"
MAGIC = b"BPENC\x00\x01\x00"
CHUNK_BYTES = 1024 * 1024
MAX_CHUNK_BYTES = 64 * 1024 * 1024
SALT_BYTES = 16
TAG_BYTES = 16
HEADER = struct.Struct(f">{len(MAGIC)}sI{SALT_BYTES}s")
KEY_HINT = "32 random bytes written as base64 (44 characters) or hex (64 characters): create one with `openssl rand -base64 32`"


@dataclass(frozen=True)
class EncryptionKey:
    """The configured key; repr and str never show it."""

    secret: bytes
    source: str  # the variable or file it came from, for messages

    def __repr__(self) -> str:
        return f"EncryptionKey(key_id={self.key_id}, source={self.source})"

    __str__ = __repr__

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"backup_pipeline key id\x00" + self.secret).hexdigest()[:16]

    def manifest_record(self, chunk_bytes: int = CHUNK_BYTES) -> dict:
        return {"algorithm": ALGORITHM, "format": FORMAT, "chunk_bytes": chunk_bytes, "key_id": self.key_id}


def parse_key(text: str, source: str) -> EncryptionKey:
    """A key from its text form (base64 or hex of 32 bytes); the message never repeats the value."""
    value = text.strip()
    decoded = None
    if len(value) == 64:
        try:
            decoded = bytes.fromhex(value)
        except ValueError:
            decoded = None
    if decoded is None:
        padded = value + "=" * (-len(value) % 4)
        altchars = b"-_" if "-" in value or "_" in value else None  # the URL-safe alphabet
        try:
            decoded = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            decoded = None
    if decoded is None or len(decoded) != 32:
        raise ConfigurationError(f"{source} is not a usable encryption key: it must be {KEY_HINT}")
    return EncryptionKey(secret=decoded, source=source)


def load_key(value: str | None, key_file: str | None) -> EncryptionKey | None:
    """The key from BACKUP_ENCRYPTION_KEY's value or from BACKUP_ENCRYPTION_KEY_FILE; None when neither is set."""
    if value and key_file:
        raise ConfigurationError(f"set only one of {KEY_ENV} and {KEY_FILE_ENV}, not both")
    if value:
        return parse_key(value, KEY_ENV)
    if key_file:
        path = Path(key_file)
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise ConfigurationError(
                f"{KEY_FILE_ENV} '{key_file}' cannot be read ({error.strerror}): point it at a file holding the key"
            ) from None
        if len(raw) == 32:  # a raw binary key file
            return EncryptionKey(secret=raw, source=f"{KEY_FILE_ENV} ({key_file})")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        return parse_key(text, f"{KEY_FILE_ENV} ({key_file})")
    return None


def check_can_decrypt(record: dict | None, key: EncryptionKey | None, name: str) -> None:
    """Refuses, before any download, a backup that the configured key cannot decrypt."""
    if not record:
        return
    if record.get("algorithm") != ALGORITHM or record.get("format") != FORMAT:
        raise ConfigurationError(
            f"{name} is encrypted with {record.get('algorithm')} ({record.get('format')}), which this version of "
            "backup_pipeline cannot decrypt"
        )
    if key is None:
        raise ConfigurationError(
            f"{name} is encrypted ({ALGORITHM}, key id {record.get('key_id')}): set {KEY_ENV} or {KEY_FILE_ENV} to "
            "the key it was made with"
        )
    if record.get("key_id") != key.key_id:
        raise ConfigurationError(
            f"{name} was encrypted with key id {record.get('key_id')}, but the configured key ({key.source}) has key "
            f"id {key.key_id}: set {KEY_ENV} or {KEY_FILE_ENV} to the key the backup was made with"
        )


def _aead(key: EncryptionKey, salt: bytes):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=FORMAT.encode()).derive(key.secret)
    return AESGCM(derived)


def _nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">Q", index)


def _associated(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def _read_full(raw, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream (pipes return short reads)."""
    parts, missing = [], size
    while missing > 0:
        data = raw.read(missing)
        if not data:
            break
        parts.append(data)
        missing -= len(data)
    return b"".join(parts)


class _ChunkedReader:
    """A file-like read(n) over a stream produced chunk by chunk."""

    def __init__(self):
        self._buffer = bytearray()
        self._done = False

    def _next_chunk(self) -> bytes | None:
        raise NotImplementedError

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size is None or size < 0 or len(self._buffer) < size):
            chunk = self._next_chunk()
            if chunk is None:
                self._done = True
            else:
                self._buffer += chunk
        if size is None or size < 0 or size >= len(self._buffer):
            out, self._buffer = bytes(self._buffer), bytearray()
            return out
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def readable(self) -> bool:
        return True


class EncryptingReader(_ChunkedReader):
    """Reads plaintext from `raw` and yields the encrypted stream."""

    def __init__(self, raw, key: EncryptionKey, chunk_bytes: int = CHUNK_BYTES):
        super().__init__()
        self._raw = raw
        self._chunk_bytes = chunk_bytes
        salt = os.urandom(SALT_BYTES)
        self._header = HEADER.pack(MAGIC, chunk_bytes, salt)
        self._aead = _aead(key, salt)
        self._index = 0
        self._header_sent = False
        self._final_sent = False

    def _next_chunk(self) -> bytes | None:
        if not self._header_sent:
            self._header_sent = True
            return self._header
        if self._final_sent:
            return None
        plain = _read_full(self._raw, self._chunk_bytes)
        final = len(plain) < self._chunk_bytes
        sealed = self._aead.encrypt(_nonce(self._index), plain, _associated(self._header, self._index, final))
        self._index += 1
        self._final_sent = final
        return sealed


class DecryptingReader(_ChunkedReader):
    """Reads the encrypted stream from `raw` and yields the plaintext; damage raises VerificationError."""

    def __init__(self, raw, key: EncryptionKey, name: str, key_checked: bool = True):
        super().__init__()
        self._raw = raw
        self._key = key
        self._name = name
        # With the manifest's key id already matched, a chunk that fails authentication is damage; without it
        # (decrypting by hand), a first chunk that fails most likely met the wrong key.
        self._key_checked = key_checked
        self._aead = None
        self._header = b""
        self._chunk_bytes = 0
        self._index = 0
        self._finished = False

    def _damaged(self, what: str) -> VerificationError:
        return VerificationError(f"{self._name} is corrupted: {what}; restore another backup")

    def _start(self) -> None:
        header = _read_full(self._raw, HEADER.size)
        if len(header) < HEADER.size:
            raise self._damaged("the encrypted object is too short to hold its header (truncated)")
        magic, chunk_bytes, salt = HEADER.unpack(header)
        if magic != MAGIC or not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
            raise self._damaged("it does not start with the header of an encrypted backup")
        self._header, self._chunk_bytes = header, chunk_bytes
        self._aead = _aead(self._key, salt)

    def _next_chunk(self) -> bytes | None:
        from cryptography.exceptions import InvalidTag

        if self._aead is None:
            self._start()
        if self._finished:
            if self._raw.read(1):
                raise self._damaged("bytes follow the final encrypted chunk")
            return None
        sealed = _read_full(self._raw, self._chunk_bytes + TAG_BYTES)
        if len(sealed) < TAG_BYTES:
            raise self._damaged(
                f"the encrypted stream ends before its final chunk (truncated after chunk {self._index})"
            )
        final = len(sealed) < self._chunk_bytes + TAG_BYTES
        try:
            plain = self._aead.decrypt(_nonce(self._index), sealed, _associated(self._header, self._index, final))
        except InvalidTag:
            if self._index == 0 and not self._key_checked:
                raise VerificationError(
                    f"{self._name} cannot be decrypted with the key from {self._key.source} (key id "
                    f"{self._key.key_id}): it was encrypted with another key, or it is damaged"
                ) from None
            raise self._damaged(
                f"encrypted chunk {self._index} failed authentication (the object was altered or truncated)"
            ) from None
        self._index += 1
        self._finished = final
        return plain


def decrypting(reader, record: dict | None, key: EncryptionKey | None, name: str):
    """`reader` itself for a plain backup, else a DecryptingReader over it (after check_can_decrypt)."""
    if not record:
        return reader
    check_can_decrypt(record, key, name)
    return DecryptingReader(reader, key, name)


def main(argv: list[str] | None = None) -> int:
    """`python -m backup_pipeline.core.encryption decrypt < backup.dump > plain.dump`, for restoring by hand.

    The key comes from BACKUP_ENCRYPTION_KEY or BACKUP_ENCRYPTION_KEY_FILE, never from the command line.
    """
    import sys

    from backup_pipeline.core.errors import BackupError

    args = sys.argv[1:] if argv is None else argv
    if args != ["decrypt"]:
        print(
            "usage: python -m backup_pipeline.core.encryption decrypt < encrypted.dump > plain.dump\n"
            f"(the key is read from {KEY_ENV} or {KEY_FILE_ENV})",
            file=sys.stderr,
        )
        return 2
    try:
        key = load_key(os.environ.get(KEY_ENV), os.environ.get(KEY_FILE_ENV))
        if key is None:
            raise ConfigurationError(f"set {KEY_ENV} or {KEY_FILE_ENV} to the key the backup was made with")
        reader = DecryptingReader(sys.stdin.buffer, key, "the input", key_checked=False)
        while chunk := reader.read(CHUNK_BYTES):
            sys.stdout.buffer.write(chunk)
    except BackupError as error:
        print(f"decrypt: {error}", file=sys.stderr)
        return 1
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
