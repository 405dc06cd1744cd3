"""A service's master key (hazmat): where it comes from, what it seals, and the check value
that proves at start-up it is the key the database was written with.

Each service has its own master key, from SABLE_MASTER_KEY or a key file only its owner can
read, never from the database, so a stolen database can neither mint nor open a ticket.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.secret
import nacl.utils

from clients.errors import ConfigError
from clients.tickets import b64d, b64e

_CHECK = b"sable-master-key-check-v1"
CHECK_KEY = "master_key_check"  # its row in the `meta` table


def parse_key(text: str, what: str) -> bytes:
    """A 32-byte key written as base64url (43 chars) or hex (64 chars)."""
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else b64d(text)
    except ValueError:
        raise ConfigError(f"{what} is not base64url or hex") from None
    if len(key) != 32:
        raise ConfigError(f"{what} must be 32 bytes")
    return key


def load_master_key(key_file: str | None = None) -> bytes:
    """From SABLE_MASTER_KEY, else from a key file that only its owner can read."""
    env = os.environ.get("SABLE_MASTER_KEY")
    if env:
        return parse_key(env, "SABLE_MASTER_KEY")
    key_file = key_file or os.environ.get("SABLE_MASTER_KEY_FILE")
    if not key_file:
        raise ConfigError("no master key: set SABLE_MASTER_KEY or pass --master-key-file")
    return read_key_file(key_file)


def read_key_file(key_file: str | Path) -> bytes:
    path = Path(key_file)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read master key file {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"master key file {path} is readable by others; chmod 600 it")
    return parse_key(text, f"master key file {path}")


def create_key_file(key_file: str | Path) -> bytes:
    """A new random master key, written to a new file (mode 0600) and flushed to disk before
    anything is sealed with it."""
    key = nacl.utils.random(32)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(b64e(key) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return key


class MasterKey:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._box = nacl.secret.SecretBox(key)
        self._mac_key = nacl.hash.blake2b(b"sable-subject-mac", key=key, encoder=nacl.encoding.RawEncoder)

    def pseudonym(self, value: str) -> str:
        """A stable keyed digest of `value`, for storing what may be a secret (a password
        typed into a username field) where only equality matters."""
        return nacl.hash.blake2b(value.encode(), key=self._mac_key, digest_size=16).decode()

    def seal(self, plain: bytes) -> bytes:
        return bytes(self._box.encrypt(plain))

    def unseal(self, sealed: bytes) -> bytes | None:
        """The plaintext, or None if `sealed` was not sealed with this key (or is damaged)."""
        try:
            return self._box.decrypt(sealed)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            return None

    def check_value(self) -> bytes:
        return self.seal(_CHECK)

    def matches(self, check_value: bytes) -> bool:
        return self.unseal(check_value) == _CHECK

    async def check(self, store, location: str) -> None:
        """Record the check value in a new database, or refuse a key that does not open it."""
        from server.postgres import redact
        from server.store import StoreError

        if not self.matches(await store.ensure_meta(CHECK_KEY, self.check_value())):
            raise StoreError(f"the master key does not match database {redact(location)}: "
                             "this database was written with another master key")


class AlreadyRotated(ConfigError):
    """The database is sealed with the new key already (a rotation that finished before)."""


async def check_rotation(store, current: MasterKey, new: MasterKey | None = None) -> None:
    """Raise unless the database is sealed with `current` (AlreadyRotated if with `new`)."""
    from server.postgres import redact

    check = await store.get_meta(CHECK_KEY)
    if check is None:
        raise ConfigError(f"database {redact(store.path)} has no master key check value yet: "
                          "start the service on it once first")
    if new is not None and new.matches(check):
        raise AlreadyRotated(f"database {redact(store.path)} is sealed with the new key already")
    if not current.matches(check):
        raise ConfigError(f"the current master key does not open database {redact(store.path)}: "
                          "give the key the service runs with (SABLE_MASTER_KEY or --master-key-file)")


async def rotate(store, columns, current: MasterKey, new: MasterKey, progress=None):
    """Re-seal everything in `columns` (a service's `SEALED`) from `current` to `new`, in one
    transaction: a crash or error leaves the database as it was, sealed with `current`.
    Values that do not open and are not `required` are left as they were (and reported)."""
    from server.audit import AuditRecord

    await check_rotation(store, current, new)

    def reseal(column, value: bytes) -> bytes | None:
        plain = current.unseal(value)
        if plain is None:
            if column.required:
                raise ConfigError(f"a value in {column.table}.{column.column} does not open with the current "
                                  "master key; nothing was changed")
            return None
        return new.seal(plain)

    return await store.reseal(columns, reseal, AuditRecord("master_key_rotated"), progress)
