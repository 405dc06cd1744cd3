"""The discharger's X25519 keys (hazmat): a JSON key file with mode 0600, newest first.

Several keys are accepted at once so they can rotate: `rotate` puts a new key in front
(the one authorities seal new tickets to), `retire` drops an old one, after which tickets
sealed to it are refused. The running service re-reads the file when it changes.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from pathlib import Path

import nacl.public

from clients.errors import ConfigError
from clients.tickets import TicketContents, b64d, b64e, key_id
from discharger.tickets import open_ticket


class KeyFileError(ConfigError):
    """The key file is missing, unreadable, too open, or malformed."""


class DischargerKeys:
    def __init__(self, path: str):
        self.path = Path(path)
        self._version: tuple[int, int] | None = None  # (inode, mtime_ns): os.replace changes the inode
        self._keys: list[tuple[str, nacl.public.PrivateKey]] = []

    @classmethod
    def load_or_create(cls, path: str) -> DischargerKeys:
        keys = cls(path)
        if not keys.path.exists():
            keys._write([nacl.public.PrivateKey.generate()])
        keys.reload()
        return keys

    def reload(self) -> None:
        try:
            st = self.path.stat()
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(f"discharger key file {self.path} is readable by others; chmod 600 it")
            if (st.st_ino, st.st_mtime_ns) == self._version:
                return
            data = json.loads(self.path.read_text())
            keys = [nacl.public.PrivateKey(b64d(k["private"])) for k in data["keys"]]
        except OSError as e:
            raise KeyFileError(f"cannot read discharger key file {self.path}: {e.strerror}") from None
        except (ValueError, KeyError, TypeError):
            raise KeyFileError(f"discharger key file {self.path} is malformed") from None
        if not keys:
            raise KeyFileError(f"discharger key file {self.path} holds no key")
        self._keys = [(key_id(bytes(k.public_key)), k) for k in keys]
        self._version = (st.st_ino, st.st_mtime_ns)

    def _write(self, keys: list[nacl.public.PrivateKey]) -> None:
        data = {"keys": [{"kid": key_id(bytes(k.public_key)), "private": b64e(bytes(k)), "created_at": int(time.time())}
                         for k in keys]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise

    def public_keys(self) -> list[dict]:
        """For /v1/info: newest first."""
        return [{"kid": kid, "key": b64e(bytes(k.public_key))} for kid, k in self._keys]

    def rotate(self) -> str:
        new = nacl.public.PrivateKey.generate()
        self._write([new] + [k for _, k in self._keys])
        self.reload()
        return key_id(bytes(new.public_key))

    def retire(self, kid: str) -> None:
        remaining = [k for i, k in self._keys if i != kid]
        if len(remaining) == len(self._keys):
            raise KeyFileError(f"no key {kid!r}")
        if not remaining:
            raise KeyFileError("cannot retire the only key")
        self._write(remaining)
        self.reload()

    def open(self, ticket: bytes) -> TicketContents:
        self.reload()
        return open_ticket(dict(self._keys), ticket)
