"""The authority assembled: opens its store and key store, wires the domain parts together,
and starts and stops their background work. Handlers reach the parts through it:

- `orgs` (create, list), `minting` (mint, strip), `checker` (verify),
- `revocation` (by id, by value, feed pages), `listing` (an org's tokens),
- `selfservice` (the same for members, through a user token and its discharge),
- `console` (browser sign-in through the discharger, console sessions).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from authority.audit import DenialLog
from authority.config import AuthorityConfig
from authority.console import Console
from authority.dischargers import KeyRefresh, TrustedDischargers
from authority.events import DischargerEvents
from authority.feed import RevocationFeed
from authority.introspection import Introspection
from authority.leaks import ADMIN_CREDENTIAL, USER_CREDENTIAL, Leaks, PublicRevocation
from authority.listing import Listing
from authority.minting import Minting
from authority.orgs import Orgs
from authority.records import TokenCache
from authority.regeneration import Regeneration
from authority.revocation import Revocation
from authority.root_keys import RootKeys
from authority.selfservice import SelfService
from authority.store import AuthorityStore, open_store
from authority.usage import Usage
from authority.verification import Checker
from authority.webhooks import Webhooks
from clients import tokens
from clients.errors import ConfigError


class Authority:
    def __init__(self, config: AuthorityConfig, store: AuthorityStore, keys: RootKeys, trust: TrustedDischargers):
        self.config = config
        self.store = store
        self.trust = trust
        self.records = TokenCache(store, keys, config.key_cache_size)
        self.feed = RevocationFeed(store, self.records, config.feed_poll_interval)
        self.usage = Usage(store, DenialLog(), config.last_used_interval, config.flush_interval)
        self.checker = Checker(config.public_url, trust.locations(), self.records, self.usage, self.usage.denials,
                               self.feed.fresh, keys.user_token_signature,
                               lambda token_id: store.credential_revoked(USER_CREDENTIAL + token_id))
        self.orgs = Orgs(store)
        self.minting = Minting(config, store, keys, self.checker, trust, self.orgs)
        self.introspection = Introspection(self.checker)
        self.revocation = Revocation(store, self.records, self.feed, config.public_url)
        self.listing = Listing(store, self.usage)
        self.regeneration = Regeneration(store, self.minting, self.revocation)
        self.selfservice = SelfService(self.checker, self.minting, self.listing, self.revocation, store)
        self.console = Console(config.public_url, store, keys, self.minting, self.selfservice)
        self.discharger_keys = KeyRefresh(trust, config.discharger_url, store)
        self.leaks = Leaks(store, self.checker, self.revocation)
        self.webhooks = Webhooks(store, keys.master, config.webhook_allow_private)
        self.events = DischargerEvents(store)
        self.public_revocation = PublicRevocation(store, self.leaks, keys.master, config.public_revocations_per_hour)

    @classmethod
    async def open(cls, config: AuthorityConfig, say: Callable[[str], None] | None = None) -> Authority:
        """Open the store and the keys, and learn the trusted discharger's keys (fetched from
        its URL when the configuration gives one: `say` hears about the wait)."""
        trust = await TrustedDischargers.load(config, say)
        keys = RootKeys(config.master_key)
        store = await open_store(config.db_path, pooler=config.pooler, listen_url=config.listen_database)
        try:
            await keys.master.check(store, config.db_path)
            await keys.load_user_key(store)
            if config.admin_token:
                digest = tokens.secret_digest(config.admin_token)
                if await store.credential_revoked(ADMIN_CREDENTIAL + digest.hex()):
                    raise ConfigError("SABLE_ADMIN_TOKEN was reported leaked and is disabled: make a new one "
                                      "(sable admin create) and give that instead")
                await store.add_admin(digest, int(time.time()))
                if await store.credential_revoked(ADMIN_CREDENTIAL + digest.hex()):  # listed meanwhile
                    await store.remove_admin(digest)
                    raise ConfigError("SABLE_ADMIN_TOKEN was reported leaked and is disabled: make a new one "
                                      "(sable admin create) and give that instead")
        except BaseException:
            await store.close()
            raise
        return cls(config, store, keys, trust)

    async def start(self) -> None:
        await self.feed.start()
        await self.public_revocation.start()
        await self.webhooks.start()
        await self.usage.start()
        await self.discharger_keys.start()

    async def close(self) -> None:
        await self.webhooks.stop()
        await self.public_revocation.stop()
        await self.discharger_keys.stop()
        await self.feed.stop()
        await self.usage.stop()
        await self.store.close()
