"""The discharger an authority trusts by URL (SPEC §10): its public keys come from its
`/v1/info` at start and every 60 s after, so a key rotation reaches new mints without a
restart.

Keys are fetched only over HTTPS or from a loopback address: anyone who can change them in
transit could read every ticket sealed afterwards. Keys given in the configuration are pinned
and never fetched. A changed key set is written to the audit log; a failed refresh keeps the
last keys.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import structlog

from authority.config import AuthorityConfig, TrustedDischarger, discharger_from_info
from authority.store import AuthorityStore
from clients.errors import ConfigError, SableError
from server.audit import AuditRecord
from server.periodic import Periodic

log = structlog.get_logger("sable.authority.dischargers")

REFRESH_EVERY = 60.0


def check_url(url: str) -> None:
    """Refuse a discharger URL its keys could be changed through in transit."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the discharger URL {url!r} is not an http(s) URL")
    if parts.scheme == "https" or _loopback(parts.hostname):
        return
    raise ConfigError(f"the discharger's keys would be fetched over plain HTTP from {parts.hostname}: "
                      "use https, a loopback address, or give its keys in the config ([[authority.dischargers]])")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def fetch(url: str, attempts: int = 1, timeout: float = 5.0,
                progress: Callable[[str], None] | None = None) -> TrustedDischarger:
    """The discharger's keys from its /v1/info, retried (1 s apart) so services can start in
    any order; `progress` hears about the wait (the CLI prints it on stderr)."""
    from clients.sdk import DischargerClient, SableAPIError

    check_url(url)
    for attempt in range(attempts):
        try:
            async with DischargerClient(url, timeout=timeout, retries=0) as d:
                return discharger_from_info(await d.info())
        except SableAPIError as e:
            if attempt == attempts - 1:
                raise ConfigError(f"cannot get the discharger's keys from {url}/v1/info: {e.message}") from None
            if progress is not None and attempt % 5 == 0:
                progress(f"waiting for the discharger at {url} ({e.message}); "
                         f"trying for {attempts - attempt - 1} s more")
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


class TrustedDischargers:
    """The dischargers this authority trusts, with their current keys. The authority owns it:
    given in the configuration (pinned), or fetched from `discharger_url` at start-up
    (`load`) and kept current by `KeyRefresh`. The configuration itself is never written."""

    def __init__(self, configured: Sequence[TrustedDischarger] = ()):
        self.current: tuple[TrustedDischarger, ...] = tuple(configured)

    @classmethod
    async def load(cls, config: AuthorityConfig, say: Callable[[str], None] | None = None,
                   attempts: int = 30) -> TrustedDischargers:
        """The configured dischargers, else the one at `config.discharger_url` (waited for up
        to `attempts` seconds, so services can start in any order; `say` hears about it)."""
        trust = cls(config.dischargers)
        if config.discharger_url and not trust.current:
            trust.current = (await fetch(config.discharger_url, attempts=attempts, progress=say),)
        if not trust.current and say is not None:
            say("warning: no discharger configured; minting is disabled")
        return trust

    def first(self) -> TrustedDischarger | None:
        """The discharger tickets are sealed to, if any."""
        return self.current[0] if self.current else None

    def locations(self) -> frozenset[str]:
        return frozenset(d.location for d in self.current)


class KeyRefresh:
    """Keeps `trust` current with the discharger at `url` (every 60 s)."""

    def __init__(self, trust: TrustedDischargers, url: str | None, store: AuthorityStore,
                 every: float = REFRESH_EVERY):
        self.trust = trust
        self.url = url
        self.store = store
        self._loop = Periodic("discharger_keys_refresh", self.refresh, every)

    async def start(self) -> None:
        if self.url:  # keys given in the configuration are pinned
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    @property
    def running(self) -> bool:
        return self._loop.task is not None

    async def refresh(self) -> bool:
        """Fetch the keys once; True if they changed. Failures are logged and change nothing."""
        url = self.url
        assert url is not None
        try:
            fresh = await fetch(url)
        except (ConfigError, SableError) as e:
            log.warning("discharger_keys_refresh_failed", url=url, error=str(e))
            return False
        current = self.trust.first()
        if current is not None and fresh.location != current.location:
            # The location is what verification trusts; it changes only with the configuration.
            log.warning("discharger_keys_refresh_refused", url=url,
                        error=f"the discharger now names itself {fresh.location!r}, not {current.location!r}")
            return False
        if current is not None and fresh.public_keys == current.public_keys:
            return False
        old = {kid for kid, _ in current.public_keys} if current else set()
        new = {kid for kid, _ in fresh.public_keys}
        self.trust.current = (fresh,)
        audit = AuditRecord("discharger_keys", detail={
            "discharger": fresh.location, "current": fresh.public_keys[0][0],
            "added": sorted(new - old), "removed": sorted(old - new)})
        audit.emit()
        try:
            await self.store.write_audit([audit])
        except SableError as e:  # the keys are in use already; the JSON line above has the record
            log.warning("discharger_keys_audit_failed", error=str(e))
        return True
