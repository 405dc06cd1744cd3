"""The discharger's X25519 keys (hazmat): sealed with its master key in its database, newest first.

Several keys are accepted at once so they can rotate: `rotate` puts a new key in front (the
one authorities seal new tickets to), `retire` drops an old one, after which tickets sealed to
it are refused. Replicas share the keys through the database and re-read them every few
seconds, and at once when a ticket names a key they do not hold yet.

A 0.1.0 data dir kept the keys in a plaintext JSON file; the first start on an empty key table
moves that file's keys in and deletes the file.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import nacl.public
import structlog

from clients.errors import ConfigError, TicketError
from clients.tickets import TicketContents, b64d, b64e, key_id, ticket_kid
from discharger.store import DischargerStore, StoreError
from discharger.tickets import unseal_ticket
from server.audit import AuditRecord
from server.masterkey import MasterKey
from server.periodic import Periodic

log = structlog.get_logger("sable.discharger.keys")

RELOAD_EVERY = 10.0  # seconds: a rotation through one replica reaches the others well within 60 s
UNKNOWN_KID_RELOAD = 0.1  # at most this often on a ticket naming a key we do not hold (sessions only)


class KeyChangeError(ConfigError):
    """A key operation that cannot be done (an unknown kid, the only key)."""


class TicketKeys:
    def __init__(self, store: DischargerStore, master: MasterKey):
        self.store = store
        self.master = master
        self._keys: list[tuple[str, nacl.public.PrivateKey]] = []
        self._loaded_at = 0.0
        self._loop = Periodic("discharger_keys_reload", lambda: self.refresh(max_age=0), RELOAD_EVERY)

    @classmethod
    async def load(cls, store: DischargerStore, master: MasterKey, legacy_file: str | None = None) -> TicketKeys:
        """The keys in the database; on an empty key table, those of a 0.1.0 key file (moved
        in), else a first new key."""
        keys = cls(store, master)
        if not await store.list_keys():
            imported = _read_legacy(legacy_file) if legacy_file else None
            fresh = imported or [nacl.public.PrivateKey.generate()]
            rows = [(key_id(bytes(k.public_key)), master.seal(bytes(k))) for k in fresh]
            audit = AuditRecord("discharger_keys", detail={"import" if imported else "create": [kid for kid, _ in rows]})
            if await store.add_keys_if_none(rows, int(time.time()), audit):  # replicas may race here
                audit.emit()
        await keys.reload()
        if legacy_file and Path(legacy_file).exists():
            _retire_legacy(legacy_file, {kid for kid, _ in keys._keys})
        return keys

    async def reload(self) -> None:
        rows = await self.store.list_keys()
        keys = []
        for kid, sealed in rows:
            plain = self.master.unseal(sealed)
            key = nacl.public.PrivateKey(plain) if plain is not None and len(plain) == 32 else None
            if key is None or key_id(bytes(key.public_key)) != kid:
                raise StoreError(f"discharger key {kid} cannot be opened with this master key")
            keys.append((kid, key))
        if not keys:
            raise StoreError("the database holds no discharger key")
        self._keys = keys
        self._loaded_at = time.monotonic()

    async def refresh(self, max_age: float) -> None:
        """Re-read the keys if the last read is older than `max_age`; on a database error,
        keep the keys we hold."""
        if time.monotonic() - self._loaded_at <= max_age:
            return
        try:
            await self.reload()
        except StoreError as e:
            log.warning("discharger_keys_reload_failed", error=str(e))

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def public_keys(self) -> list[dict]:
        """For /v1/info: newest first."""
        return [{"kid": kid, "key": b64e(bytes(k.public_key))} for kid, k in self._keys]

    async def rotate(self) -> str:
        new = nacl.public.PrivateKey.generate()
        kid = key_id(bytes(new.public_key))
        audit = AuditRecord("discharger_keys", detail={"rotate": kid})
        await self.store.add_key(kid, self.master.seal(bytes(new)), int(time.time()), audit)
        audit.emit()
        await self.reload()
        return kid

    async def retire(self, kid: str) -> None:
        audit = AuditRecord("discharger_keys", detail={"retire": kid})
        outcome = await self.store.retire_key(kid, audit)
        if outcome == "unknown":
            raise KeyChangeError(f"no key {kid!r}")
        if outcome == "last":
            raise KeyChangeError("cannot retire the only key")
        audit.emit()
        await self.reload()

    async def unseal_ticket(self, ticket: bytes) -> TicketContents:
        """Open a ticket; TicketError if it can't be. A key id we don't hold may be a rotation
        through another replica: re-read the keys first (rate-limited)."""
        held = dict(self._keys)
        try:
            unknown = ticket_kid(ticket) not in held
        except TicketError:
            unknown = False  # unseal_ticket says what is wrong with it
        if unknown and time.monotonic() - self._loaded_at > UNKNOWN_KID_RELOAD:
            await self.reload()
            held = dict(self._keys)
        return unseal_ticket(held, ticket)


def _read_legacy(path: str) -> list[nacl.public.PrivateKey] | None:
    """The keys of a 0.1.0 key file, newest first; None if there is no file."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read discharger key file {p}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"discharger key file {p} is readable by others; chmod 600 it")
    try:
        keys = [nacl.public.PrivateKey(b64d(k["private"])) for k in json.loads(p.read_text())["keys"]]
    except OSError as e:
        raise ConfigError(f"cannot read discharger key file {p}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"discharger key file {p} is malformed") from None
    if not keys:
        raise ConfigError(f"discharger key file {p} holds no key")
    return keys


def _retire_legacy(path: str, held: set[str]) -> None:
    """Delete a plaintext key file once every key in it is sealed in the database."""
    try:
        in_file = {key_id(bytes(k.public_key)) for k in _read_legacy(path) or []}
    except ConfigError as e:
        log.warning("discharger_key_file_left", path=path, reason=str(e))
        return
    if in_file <= held:
        os.unlink(path)
        log.info("discharger_key_file_moved", path=path)
    else:
        log.warning("discharger_key_file_left", path=path,
                    reason="it holds keys the database does not; the database's keys are used")
