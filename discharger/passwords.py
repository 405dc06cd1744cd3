"""argon2id password hashing (PyNaCl pwhash), run in a small bounded thread pool so a
login never stalls the event loop and a login flood cannot queue without limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import nacl.exceptions
import nacl.pwhash

from clients.errors import RateLimited

_LIMITS = {
    "interactive": (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE),
    "moderate": (nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE),
}


class Busy(RateLimited):
    """Too many logins are already waiting for a hashing thread."""

    def __init__(self) -> None:
        super().__init__("too many password operations in flight", retry_after=1)


class Hasher:
    def __init__(self, limits: str = "interactive", threads: int = 2, queue: int = 64):
        if limits not in _LIMITS:
            raise ValueError(f"password_limits must be one of {sorted(_LIMITS)}")
        self._ops, self._mem = _LIMITS[limits]
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2id")
        self._slots = queue
        self._dummy: bytes | None = None
        self.observe: Callable[[float], None] | None = None  # told each hash's duration (metrics)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn, *args):
        if self._slots <= 0:
            raise Busy()
        self._slots -= 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, fn, *args)
        finally:
            self._slots += 1

    def _timed(self, fn, *args):
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            if self.observe is not None:
                self.observe(time.perf_counter() - started)

    def _hash(self, password: bytes) -> bytes:
        return nacl.pwhash.argon2id.str(password, opslimit=self._ops, memlimit=self._mem)

    async def hash(self, password: str) -> bytes:
        return await self._run(self._hash, password.encode("utf-8"))

    async def start(self) -> None:
        self._dummy = await self._run(self._hash, b"sable-dummy-password")

    async def verify(self, stored: bytes | None, password: str) -> bool:
        """Check a password. With no stored hash (an unknown user, or one who signs in only
        through a provider) a dummy hash is checked, so it costs the same time as a wrong
        password, and the answer is False whatever the password."""
        if not stored:
            await self._run(_verify, self._dummy, password.encode("utf-8"))
            return False
        return await self._run(_verify, stored, password.encode("utf-8"))


def _verify(stored: bytes, password: bytes) -> bool:
    try:
        return nacl.pwhash.verify(stored, password)
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        return False
