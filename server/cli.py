"""The server-side `sable` commands: `authority serve`, `discharger serve` (and its keys),
`dev`, `dev-env` and `admin create`. `clients.cli.main` registers them lazily, so the
client CLI imports no server code until one of these runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
import time
from pathlib import Path

import click
import nacl.utils

from clients import tokens, tracing
from clients.cli.common import EXIT_USAGE, fail, handle_errors, write_private
from clients.errors import Unavailable
from clients.sdk import AuthorityClient, DischargerClient, SableAPIError
from clients.tickets import b64d
from server.launcher import announce, is_worker, serve, supervise, tls_context
from server.logs import configure_logging


def _service_options(port: int):
    def wrap(fn):
        for opt in reversed([
            click.option("--host", help="Listen address (default 127.0.0.1)."),
            click.option("--port", type=int, help=f"Listen port (default {port})."),
            click.option("--public-url", help="The URL clients use (default: the listen address)."),
            click.option("--data-dir", type=click.Path(file_okay=False), help="Where the database lives (default ./var)."),
            click.option("--db", metavar="PATH|URL",
                         help="A SQLite file or a postgresql:// URL (else SABLE_DATABASE_URL, the TOML key "
                              "`database`, or <data-dir>/<service>.db)."),
            click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A TOML settings file."),
            click.option("--tls-cert", type=click.Path(dir_okay=False)),
            click.option("--tls-key", type=click.Path(dir_okay=False)),
            click.option("--log-level", default="INFO", show_default=True),
            click.option("--metrics-port", type=click.IntRange(1, 65535),
                         help="Serve /metrics on this port instead of the main one (which then answers 404)."),
            click.option("--metrics-host", help="The address for --metrics-port (default: --host)."),
        ]):
            fn = opt(fn)
        return fn
    return wrap


def _sites(app, config, tls) -> list:
    """The service's app on its address, and /metrics on its own if one is configured."""
    from server.http import METRICS, metrics_app

    sites = [(app, config.host, config.port, tls)]
    if config.metrics_port:
        sites.append((metrics_app(app[METRICS]), config.metrics_host or config.host, config.metrics_port, None))
    return sites


@click.group()
def authority():
    """The authority service."""


@authority.command("serve")
@_service_options(8700)
@click.option("--discharger", help="URL of the discharger to trust (https, or a loopback address); its keys "
                                   "come from its /v1/info, refreshed every 60 s.")
@click.option("--master-key-file", type=click.Path(dir_okay=False), help="Else SABLE_MASTER_KEY is used.")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Worker processes sharing the port (SO_REUSEPORT) and the database (default 1; TOML "
                   "`workers`, env SABLE_AUTHORITY_WORKERS).")
@click.option("--trusted-proxy", multiple=True, metavar="CIDR",
              help="A reverse proxy whose X-Forwarded-For names the client and whose X-Forwarded-Proto sets the "
                   "scheme for cookies. Repeatable; TOML `trusted_proxy`.")
@handle_errors
def authority_serve(config_path, tls_cert, tls_key, log_level, workers, trusted_proxy, **flags):
    """Run the authority."""
    from authority.app import create_app
    from authority.config import load
    from authority.dischargers import fetch
    from server.http import parse_networks

    configure_logging(log_level)
    tracing.configure_from_env("sable-authority")
    config = load(config_path, tls_cert=tls_cert, trusted_proxy=list(trusted_proxy) or None, workers=workers,
                  **flags)
    workers = config.workers
    try:
        parse_networks(config.trusted_proxies)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    tls = tls_context(tls_cert, tls_key)
    worker = is_worker()
    if workers > 1 and not worker:
        sys.exit(supervise(workers))

    async def main():
        if config.discharger_url:  # refreshed every 60 s once running
            config.dischargers = [await fetch(config.discharger_url, attempts=30,
                                              progress=lambda m: click.echo(f"sable: {m}", err=True))]
        if not config.dischargers:
            click.echo("sable: warning: no discharger configured; minting is disabled", err=True)
        await serve(_sites(create_app(config), config, tls), lambda: announce("authority", config.public_url),
                    reuse_port=worker)

    asyncio.run(main())


@click.group()
def discharger():
    """The discharger service."""


@discharger.command("serve")
@_service_options(8701)
@click.option("--master-key-file", type=click.Path(dir_okay=False), help="Else SABLE_MASTER_KEY is used.")
@click.option("--keys", type=click.Path(dir_okay=False),
              help="A 0.1.0 key file to move into the database (default <data-dir>/discharger.keys, if present).")
@click.option("--authority-url", multiple=True,
              help="An authority's public URL whose /console/ an approved browser sign-in may return to "
                   "(repeatable; TOML `authority_url`).")
@click.option("--trusted-proxy", multiple=True, metavar="CIDR",
              help="A peer whose X-Forwarded-For names the client (a reverse proxy; the authorities, whose "
                   "console starts sign-ins for browsers). Repeatable; TOML `trusted_proxy`.")
@handle_errors
def discharger_serve(config_path, tls_cert, tls_key, log_level, authority_url, trusted_proxy, **flags):
    """Run the discharger."""
    from discharger.app import create_app
    from discharger.config import load
    from server.http import parse_networks

    configure_logging(log_level)
    tracing.configure_from_env("sable-discharger")
    config = load(config_path, tls_cert=tls_cert, authority_url=list(authority_url) or None,
                  trusted_proxy=list(trusted_proxy) or None, **flags)
    try:
        parse_networks(config.trusted_proxies)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    tls = tls_context(tls_cert, tls_key)
    asyncio.run(serve(_sites(create_app(config), config, tls), lambda: announce("discharger", config.public_url)))


@discharger.group("keys")
def discharger_keys():
    """The discharger's X25519 keys, sealed in its database: list, rotate, retire."""


def _key_options(fn):
    for opt in reversed([
        click.option("--data-dir", type=click.Path(file_okay=False), help="Where the database lives (default ./var)."),
        click.option("--db", metavar="PATH|URL", help="A SQLite file or a postgresql:// URL."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False), help="The discharger's TOML settings."),
        click.option("--master-key-file", type=click.Path(dir_okay=False), help="Else SABLE_MASTER_KEY is used."),
        click.option("--keys", type=click.Path(dir_okay=False), help="A 0.1.0 key file to move in first."),
    ]):
        fn = opt(fn)
    return fn


async def _open_keys(config, action):
    """Run `action(keys)` on the discharger keys in `config`'s database (moving a 0.1.0 key
    file in first), checking the master key as the service would."""
    from discharger.keys import DischargerKeys
    from discharger.store import open_store
    from server.masterkey import MasterKey

    master = MasterKey(config.master_key)
    store = await open_store(config.db_path, role="tool")
    try:
        await master.check(store, config.db_path)
        return await action(await DischargerKeys.load(store, master, config.keys_path))
    finally:
        await store.close()


def _with_keys(config_path, flags, action):
    """Run `action(keys)` on the discharger database the options name."""
    from discharger.config import load

    config = load(config_path, **flags)
    configure_logging("WARNING", sys.stderr)
    return asyncio.run(_open_keys(config, action))


@discharger_keys.command("list")
@_key_options
@click.option("--json", "as_json", is_flag=True, help="As [{kid, key}], the shape of an authority's public_keys.")
@handle_errors
def keys_list(config_path, as_json, **flags):
    """Print the keys, newest (the one new tickets are sealed to) first."""
    async def action(keys):
        return keys.public_keys()
    listed = _with_keys(config_path, flags, action)
    if as_json:
        click.echo(json.dumps([{"kid": k["kid"], "key": k["key"]} for k in listed]))
        return
    for i, k in enumerate(listed):
        click.echo(f"{k['kid']}  {k['key']}" + ("  (current)" if i == 0 else ""))


@discharger_keys.command("rotate")
@_key_options
@handle_errors
def keys_rotate(config_path, **flags):
    """Add a new current key; the old ones stay accepted until retired. Running dischargers
    pick it up within 10 s, and authorities that take this discharger's keys from its URL
    seal new tickets to it within 60 s."""
    async def action(keys):
        return await keys.rotate()
    click.echo(_with_keys(config_path, flags, action))


@discharger_keys.command("retire")
@click.argument("kid")
@_key_options
@handle_errors
def keys_retire(kid, config_path, **flags):
    """Stop accepting tickets sealed to KID."""
    from discharger.keys import KeyChangeError

    async def action(keys):
        await keys.retire(kid)
    try:
        _with_keys(config_path, flags, action)
    except KeyChangeError as e:
        fail(str(e))
    click.echo(f"retired {kid}", err=True)


# --- sable dev --------------------------------------------------------------------------------

DEV_ORG, DEV_USER = "acme", "alice"


def _dev_master_key(data_dir: Path, service: str) -> bytes:
    """`<data-dir>/<service>.key`, made on first use; a 0.1.0 data dir's `master.key` is the
    authority's."""
    from server.masterkey import create_key_file, load_master_key

    path = data_dir / f"{service}.key"
    legacy = data_dir / "master.key"
    if service == "authority" and not path.exists() and legacy.exists():
        os.rename(legacy, path)
    if not path.exists():
        create_key_file(path)
    return load_master_key(str(path))


async def _dev_discharger_keys(config) -> tuple[tuple[str, bytes], ...]:
    """The dev discharger's public keys, read (or made) before either service starts, so
    the authority can be given them."""
    async def public(keys):
        return tuple((k["kid"], b64d(k["key"])) for k in keys.public_keys())
    return await _open_keys(config, public)


@click.command()
@click.option("--data-dir", default="./var", show_default=True, type=click.Path(file_okay=False))
@click.option("--authority-port", default=8700, show_default=True, type=int)
@click.option("--discharger-port", default=8701, show_default=True, type=int)
@click.option("--db", "database", metavar="URL", envvar="SABLE_DATABASE_URL",
              help="A postgresql:// URL both services use (each in its own schema); default: SQLite "
                   "files under the data dir.")
@click.option("--log-level", default="WARNING", show_default=True)
@handle_errors
def dev(data_dir, authority_port, discharger_port, database, log_level):
    """Run both services locally (SQLite under the data dir, or `--db postgresql://...`),
    with org acme and user alice."""
    from authority.app import create_app as authority_app
    from authority.config import AuthorityConfig, TrustedDischarger
    from discharger.app import create_app as discharger_app
    from discharger.config import DischargerConfig

    configure_logging(log_level)
    tracing.configure_from_env("sable-dev")
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    dev_file = root / "dev.json"
    previous = json.loads(dev_file.read_text()) if dev_file.exists() else {}
    admin = previous.get("admin_token") or tokens.encode(tokens.ADMIN, nacl.utils.random(32))
    users = previous.get("users") or [{"username": DEV_USER, "password": secrets.token_urlsafe(12)}]
    host = "127.0.0.1"
    d_url, a_url = f"http://{host}:{discharger_port}", f"http://{host}:{authority_port}"

    from server.postgres import is_url
    if database and not is_url(database):
        fail("--db takes a postgresql:// URL (for SQLite, use --data-dir)", EXIT_USAGE)
    d_config = DischargerConfig(db_path=database or str(root / "discharger.db"),
                                master_key=_dev_master_key(root, "discharger"), keys_path=str(root / "discharger.keys"),
                                public_url=d_url, host=host, port=discharger_port, admin_token=admin,
                                authority_urls=(a_url,))  # no proxy in front: X-Forwarded-For is not believed
    trust = TrustedDischarger(d_url, asyncio.run(_dev_discharger_keys(d_config)))
    a_config = AuthorityConfig(db_path=database or str(root / "authority.db"),
                               master_key=_dev_master_key(root, "authority"), public_url=a_url,
                               dischargers=[trust], discharger_url=d_url, host=host, port=authority_port,
                               admin_token=admin)

    async def ready():
        async with AuthorityClient(a_url, admin_token=admin) as a, DischargerClient(d_url, admin_token=admin) as d:
            try:
                await a.create_org(DEV_ORG)
            except SableAPIError as e:
                if e.code != "conflict":
                    raise
            for u in users:
                try:
                    await d.create_user(u["username"], u["password"], [DEV_ORG])
                except SableAPIError as e:
                    if e.code != "conflict":
                        raise
        write_private(dev_file, {"authority_url": a_url, "discharger_url": d_url, "admin_token": admin,
                                 "org": DEV_ORG, "users": users})
        write_text_private(_last_dev(), str(root.resolve()))  # so dev-env works from any folder
        click.echo(_walkthrough(a_url, d_url, root, users[0]))

    try:
        asyncio.run(serve([(discharger_app(d_config), host, discharger_port, None),
                           (authority_app(a_config), host, authority_port, None)], ready))
    except Unavailable as e:
        if "cannot listen" not in e.message:
            raise
        fail(f"{e.message}. Choose other ports: make run AUTHORITY_PORT={authority_port + 1000} "
             f"DISCHARGER_PORT={discharger_port + 1000} (or sable dev --authority-port/--discharger-port)",
             EXIT_USAGE)
    click.echo("stopped", err=True)


def _walkthrough(a_url: str, d_url: str, root: Path, user: dict) -> str:
    return f"""
Sable is running.
  authority   {a_url}
  discharger  {d_url}
  data        {root}/ (dev.json holds the admin credential and passwords, mode 0600)
  org {DEV_ORG}, user {user['username']}, password {user['password']}

In another terminal, from this folder:
  eval "$(.venv/bin/sable dev-env --data-dir {root})"   # sets SABLE_* and puts sable on PATH
  echo "$SABLE_DEV_PASSWORD" | sable login -u {user['username']} --password-stdin
  PT=$(sable token create --org {DEV_ORG} --apps orders --actions rw)
  ST=$(sable strip "$PT")
  HT=$(sable attenuate "$ST" --hosts worker-7)
  sable verify "$HT" --org {DEV_ORG} --action r --app orders --host worker-7   # allowed
  sable verify "$HT" --org {DEV_ORG} --action r --app orders --host worker-8   # denied
  sable token revoke "$(sable inspect "$PT" --field id)"
  sable verify "$HT" --org {DEV_ORG} --action r --app orders --host worker-7   # denied: revoked

In a browser: the console of org {DEV_ORG} at {a_url}/console/orgs/{DEV_ORG}
(sign in as {user['username']} at the discharger); `sable login --web` signs the CLI in the same way.

Ctrl-C stops both services; a second `make run` reuses {root}/.
"""


def _last_dev() -> Path:
    from clients.cli.common import session_path
    return session_path().with_name("last-dev-dir")


def write_text_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text)
    path.chmod(0o600)


@click.command("dev-env")
@click.option("--data-dir", default="./var", show_default=True, type=click.Path(file_okay=False))
@handle_errors
def dev_env(data_dir):
    """Print shell exports for talking to `sable dev`: eval "$(sable dev-env)". From another
    folder, it finds the data dir of the last `sable dev` started by this user."""
    path = Path(data_dir) / "dev.json"
    if not path.exists() and data_dir == "./var" and _last_dev().exists():
        path = Path(_last_dev().read_text().strip()) / "dev.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        # Under eval, stdout is what runs: make the failure visible there too.
        click.echo(f"echo 'sable: no {path}: start `sable dev` (make run) first, or pass --data-dir' >&2; false")
        fail(f"no {path}: start `sable dev` (make run) first, or pass --data-dir")
    bin_dir = Path(os.path.realpath(sys.argv[0])).parent
    click.echo(f"export SABLE_AUTHORITY_URL={data['authority_url']}")
    click.echo(f"export SABLE_DISCHARGER_URL={data['discharger_url']}")
    click.echo(f"export SABLE_ADMIN_TOKEN={data['admin_token']}")
    click.echo(f"export SABLE_DEV_USER={data['users'][0]['username']}")
    click.echo(f"export SABLE_DEV_PASSWORD={data['users'][0]['password']}")
    click.echo(f'export PATH="{bin_dir}:$PATH"')


@click.group()
def admin():
    """Admin credentials and master keys."""


def _admin_targets(data_dir, authority_db, discharger_db) -> list:
    from authority.store import open_store as authority_store
    from discharger.store import open_store as discharger_store

    targets = []
    if data_dir:
        for opener, name in ((authority_store, "authority.db"), (discharger_store, "discharger.db")):
            if (Path(data_dir) / name).exists():
                targets.append((opener, str(Path(data_dir) / name)))
    if authority_db:
        targets.append((authority_store, authority_db))
    if discharger_db:
        targets.append((discharger_store, discharger_db))
    if not targets:
        fail("name a database: --data-dir, --authority-db or --discharger-db", EXIT_USAGE)
    return targets


def _admin_id(digest: bytes) -> str:
    """How a credential is named in listings: the start of its digest, never the secret."""
    return digest.hex()[:12]


def _database_options(fn):
    for opt in reversed([
        click.option("--data-dir", type=click.Path(file_okay=False), help="The databases found here."),
        click.option("--authority-db", metavar="PATH|URL"),
        click.option("--discharger-db", metavar="PATH|URL"),
    ]):
        fn = opt(fn)
    return fn


@admin.command("create")
@_database_options
@handle_errors
def admin_create(data_dir, authority_db, discharger_db):
    """Print a new admin credential, registered (hashed) in the given service databases."""
    targets = _admin_targets(data_dir, authority_db, discharger_db)
    credential = tokens.encode(tokens.ADMIN, nacl.utils.random(32))

    async def go():
        for opener, path in targets:
            store = await opener(path)
            try:
                await store.add_admin(tokens.secret_digest(credential), int(time.time()))
            finally:
                await store.close()
    asyncio.run(go())
    click.echo(credential)
    click.echo(f"registered as {_admin_id(tokens.secret_digest(credential))} in {', '.join(p for _, p in targets)}",
               err=True)


@admin.command("list")
@_database_options
@handle_errors
def admin_list(data_dir, authority_db, discharger_db):
    """List the admin credentials registered in the databases, by id (the start of their digest)."""
    from clients.caveats import format_time

    async def go():
        rows = []
        for opener, path in _admin_targets(data_dir, authority_db, discharger_db):
            store = await opener(path)
            try:
                rows += [(path, digest, at) for digest, at in await store.list_admins()]
            finally:
                await store.close()
        return rows
    for path, digest, at in asyncio.run(go()):
        click.echo(f"{_admin_id(digest)}  {format_time(at)}  {path}")


@admin.command("revoke")
@click.argument("admin_id")
@_database_options
@handle_errors
def admin_revoke(admin_id, data_dir, authority_db, discharger_db):
    """Remove the admin credential ADMIN_ID (from `sable admin list`) from the databases."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", admin_id):
        fail("ADMIN_ID is the hex id `sable admin list` shows (at least 8 characters)", EXIT_USAGE)

    async def go():
        removed = []
        for opener, path in _admin_targets(data_dir, authority_db, discharger_db):
            store = await opener(path)
            try:
                matches = [d for d, _ in await store.list_admins() if d.hex().startswith(admin_id)]
                if len(matches) > 1:
                    fail(f"{admin_id} names {len(matches)} credentials in {path}: give more of it", EXIT_USAGE)
                if matches and await store.remove_admin(matches[0]):
                    removed.append(path)
            finally:
                await store.close()
        return removed
    removed = asyncio.run(go())
    if not removed:
        fail(f"no admin credential {admin_id}")
    click.echo(f"removed admin {admin_id} from {', '.join(removed)}")
    click.echo("a credential given to a service in SABLE_ADMIN_TOKEN is registered again at its next start: "
               "remove it from the service's environment too", err=True)


@admin.command("rotate-master-key")
@click.option("--service", type=click.Choice(("authority", "discharger")), required=True,
              help="Whose master key (each service has its own).")
@click.option("--new-key-file", required=True, type=click.Path(dir_okay=False),
              help="The new key: read if the file exists (mode 0600), else made there.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="The service's TOML settings (for its database and key file).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the database lives (default ./var).")
@click.option("--db", metavar="PATH|URL", help="A SQLite file or a postgresql:// URL.")
@click.option("--master-key-file", type=click.Path(dir_okay=False),
              help="The current key, else SABLE_MASTER_KEY, as the service reads it.")
@handle_errors
def admin_rotate_master_key(service, new_key_file, config_path, **flags):
    """Re-seal everything the service's master key seals (root keys, the user-token key,
    discharger keys) with a new key, in one transaction. Stop every process of the service
    first; then start them with the new key. Tokens keep verifying."""
    from server.masterkey import AlreadyRotated, MasterKey, check_rotation, create_key_file, read_key_file, rotate
    from server.postgres import is_url, redact

    if service == "authority":
        from authority.config import load as load_config
        from authority.store import SEALED, open_store
    else:
        from discharger.config import load as load_config  # type: ignore[assignment]
        from discharger.store import SEALED, open_store  # type: ignore[assignment]
    config = load_config(config_path, **{k: v for k, v in flags.items() if v})
    location = config.db_path
    configure_logging("WARNING", sys.stderr)
    if not is_url(location) and not Path(location).exists():
        fail(f"no database file at {location}", EXIT_USAGE)
    current = MasterKey(config.master_key)
    new_key = read_key_file(new_key_file) if Path(new_key_file).exists() else None
    if new_key == config.master_key:
        fail("the new key is the current key", EXIT_USAGE)
    started = time.monotonic()
    shown: dict[str, float] = {}

    def progress(table: str, done: int, total: int) -> None:
        # Quiet for a pass under 5 s; then a line every 5 s, and each table's last.
        now = time.monotonic()
        if now - max(shown.get(table, 0.0), started) >= 5.0 or (done == total and table in shown):
            shown[table] = now
            click.echo(f"re-sealing {table}: {done}/{total} ({100 * done // total}%)", err=True)

    async def go():
        store = await open_store(location, migrate=False, role="tool")
        try:
            if await store.in_use():
                fail(f"a running {service} has {redact(location)} open: stop every {service} process first"
                     + ("" if is_url(location) else f" (if none runs, `sable db status --db {location}` clears "
                        "what a crashed one left)"), EXIT_USAGE)
            if (have := await store.stored_version()) != store.schema_version():
                fail(f"{redact(location)} has schema version {have}, this build {store.schema_version()}: "
                     "run `sable db upgrade` on it first", EXIT_USAGE)
            await check_rotation(store, current, MasterKey(new_key) if new_key else None)
            if new_key is None:  # made only now that the current key is known to be right
                new = MasterKey(create_key_file(new_key_file))
                click.echo(f"wrote a new master key to {new_key_file} (mode 0600)", err=True)
            else:
                new = MasterKey(new_key)
            return await rotate(store, SEALED, current, new, progress)
        finally:
            await store.close()
    try:
        done = asyncio.run(go())
    except AlreadyRotated as e:
        click.echo(f"{e}: nothing to do")
        return
    counts = ", ".join(f"{n} in {table}" for table, n in done.counts.items())
    click.echo(f"{service} database {redact(location)} re-sealed with the key in {new_key_file}: {counts} "
               f"({time.monotonic() - started:.1f} s)")
    for table, keys in done.left.items():
        click.echo(f"warning: {len(keys)} value(s) in {table} did not open with the current key and were left as "
                   f"they were (they were unusable already): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}",
                   err=True)
    click.echo(f"next: start every {service} process with the new key (--master-key-file {new_key_file} or "
               "SABLE_MASTER_KEY); keep the old key for backups made before now", err=True)


@click.group()
def db():
    """A service's database: schema status and upgrades."""


_SERVICES = ("authority", "discharger")


def _openers():
    from authority.store import open_store as authority_store
    from discharger.store import open_store as discharger_store
    return {"authority": authority_store, "discharger": discharger_store}


def _db_services(location: str, service: str | None) -> list[str]:
    """Which services' data `location` holds (or should hold): `--service`, else all of a
    PostgreSQL database's, else the one a SQLite file's name or tables say."""
    from server.postgres import is_url

    if service:
        return [service]
    if is_url(location):
        return list(_SERVICES)
    path = Path(location)
    if not path.exists():
        fail(f"no database file at {location}", EXIT_USAGE)
    for name in _SERVICES:
        if path.name.startswith(name):
            return [name]
    import sqlite3
    # Read-write, so closing the last connection removes the -shm file (a read-only one leaves
    # it, and the file would then look open by a service).
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    if "tokens" in tables:
        return ["authority"]
    if "users" in tables:
        return ["discharger"]
    fail(f"{location} holds no Sable data; name the service with --service", EXIT_USAGE)
    raise AssertionError  # unreachable: fail exits


def _db_option(fn):
    fn = click.option("--service", type=click.Choice(_SERVICES),
                      help="Whose data (default: what the database holds).")(fn)
    return click.option("--db", "location", required=True, metavar="PATH|URL", envvar="SABLE_DATABASE_URL",
                        help="A SQLite file or a postgresql:// URL (else SABLE_DATABASE_URL).")(fn)


@db.command("status")
@_db_option
@handle_errors
def db_status(location, service):
    """Print the schema version each service's data has, and this build's."""
    from server.postgres import redact

    async def go() -> list[str]:
        lines = []
        for name in _db_services(location, service):
            store = await _openers()[name](location, migrate=False)
            try:
                have, want = await store.stored_version(), store.schema_version()
            finally:
                await store.close()
            state = ("empty" if have == 0 else "up to date" if have == want
                     else "needs `sable db upgrade`" if have < want else "newer than this build")
            lines.append(f"{name}: schema version {have}, this build {want}: {state}")
        return lines
    click.echo(f"database {redact(location)}")
    for line in asyncio.run(go()):
        click.echo(line)


@db.command("upgrade")
@_db_option
@handle_errors
def db_upgrade(location, service):
    """Upgrade each service's schema to this build's (services also do this at start)."""
    async def go() -> list[str]:
        lines = []
        for name in _db_services(location, service):
            store = await _openers()[name](location, migrate=False)
            try:
                before, after = await store.migrate()
            finally:
                await store.close()
            lines.append(f"{name}: schema version {before} -> {after}" if before != after
                         else f"{name}: schema version {after}, nothing to do")
        return lines
    for line in asyncio.run(go()):
        click.echo(line)


@db.command("copy")
@click.option("--from", "src", required=True, metavar="PATH|URL", help="The database to read (not changed).")
@click.option("--to", "dst", required=True, metavar="PATH|URL", help="An empty database to fill.")
@click.option("--service", type=click.Choice(_SERVICES), help="Whose data (default: what the source holds).")
@click.option("--force", is_flag=True, help="Copy even though a service seems to have the source open.")
@handle_errors
def db_copy(src, dst, service, force):
    """Copy one service's data into an empty database, SQLite <-> PostgreSQL: ids, lineage,
    revocations and feed positions, audit, last-used times and sealed keys (no master key
    needed). Prints the last feed cursor copied."""
    from authority.store import TABLES as AUTHORITY_TABLES
    from discharger.store import TABLES as DISCHARGER_TABLES
    from server.dbcopy import copy_database
    from server.postgres import is_url, redact

    names = _db_services(src, service)
    if len(names) != 1:
        fail("a PostgreSQL database holds both services' data: name one with --service", EXIT_USAGE)
    name = names[0]
    tables = {"authority": AUTHORITY_TABLES, "discharger": DISCHARGER_TABLES}[name]
    if not is_url(dst) and Path(dst).exists() and Path(dst).stat().st_size:
        fail(f"{dst} exists; copy only into a new file or an empty database", EXIT_USAGE)
    copied = asyncio.run(copy_database(_openers()[name], tables, src, dst, force, say=lambda m: click.echo(m, err=True)))
    click.echo(f"copied {name} from {redact(src)} to {redact(dst)}: "
               + ", ".join(f"{n} {table}" for table, n in copied.rows.items()))
    if name == "authority":
        click.echo(f"last feed cursor copied: {copied.last_cursor}")
