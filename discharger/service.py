"""The discharger assembled: its store, keys and password hasher, and the domain parts
handlers reach through it: `users` (admin), `sessions` (login, logout), `discharges`,
and the browser flows: `browser` (cookie sessions), `device` (CLI device login), `flows`
(interactive discharges), and `principals` (service principals and their ID-token discharges)."""

from __future__ import annotations

import time

from clients import tokens
from clients.errors import ConfigError
from discharger.authorities import Authorities
from discharger.browser_sessions import BrowserSessions
from discharger.config import DischargerConfig
from discharger.device import DeviceLogins
from discharger.discharges import Discharges
from discharger.events import EventSender
from discharger.federation import Federation
from discharger.flows import Flows
from discharger.leaks import Leaks
from discharger.oidc import Providers
from discharger.passkeys import Passkeys
from discharger.passwords import Hasher
from discharger.policies import Policies
from discharger.principals import Principals
from discharger.sessions import Sessions
from discharger.store import DischargerStore, open_store
from discharger.ticket_keys import TicketKeys
from discharger.users import Users
from server.masterkey import MasterKey


class Discharger:
    def __init__(self, config: DischargerConfig, store: DischargerStore, keys: TicketKeys, hasher: Hasher):
        self.config = config
        self.store = store
        self.keys = keys
        self.hasher = hasher
        self.sessions = Sessions(config, store, hasher, keys.master)
        self.users = Users(store, hasher, self.sessions.forget_failures, config.identity_providers)
        self.policies = Policies(store, config.identity_providers)
        self.discharges = Discharges(config, store, keys, Authorities(config.authority_urls), self.policies)
        self.browser = BrowserSessions(config, store, self.sessions, keys.master)
        self.device = DeviceLogins(store, self.sessions, keys.master.pseudonym)
        self.flows = Flows(config.public_url, config.authority_urls, store, keys, self.discharges)
        self.providers = Providers(config.identity_providers)
        self.federation = Federation(store, self.providers, self.browser, config.public_url)
        self.passkeys = Passkeys(store, self.browser, config.public_url)
        self.principals = Principals(config, store, keys, self.discharges)
        self.leaks = Leaks(store)
        self.events = EventSender(store, config.authority_urls, config.authority_admin_token, config.public_url)

    @classmethod
    async def open(cls, config: DischargerConfig) -> Discharger:
        master = MasterKey(config.master_key)
        store = await open_store(config.db_path, pooler=config.pooler, listen_url=config.listen_database)
        hasher = Hasher(config.password_limits, config.hash_threads, config.hash_queue)
        try:
            await master.check(store, config.db_path)
            await _refuse_principal_like_usernames(store)
            keys = await TicketKeys.load(store, master, config.keys_path)
            if config.admin_token:
                digest = tokens.secret_digest(config.admin_token)
                for check in ("before", "after"):  # after too: it may be reported while we add it
                    if await store.leaked(digest):
                        await store.remove_admin(digest)
                        raise ConfigError("SABLE_ADMIN_TOKEN was reported leaked and is disabled: make a new one "
                                          "(sable admin create) and give that instead")
                    if check == "before":
                        await store.add_admin(digest, int(time.time()))
            await hasher.start()
            await keys.start()
        except BaseException:
            hasher.close()
            await store.close()
            raise
        discharger = cls(config, store, keys, hasher)
        await discharger.providers.start()  # a provider that cannot be discovered is shown as unavailable
        await discharger.events.start()
        return discharger

    async def close(self) -> None:
        await self.events.stop()
        await self.providers.close()
        await self.principals.close()
        await self.keys.stop()
        self.hasher.close()
        await self.store.close()


async def _refuse_principal_like_usernames(store: DischargerStore) -> None:
    """`:` is kept for principals (SPEC §15, §16): a database holding a user with one in its
    name is refused at start, naming the user, so no principal can ever be confused with them."""
    for user in await store.list_users():
        if ":" in user.username:
            raise ConfigError(f"user {user.username!r} has a ':' in its name, which is kept for principals "
                              "(ci:NAME); rename or remove that user with the previous version, then start again")
