import os

import nacl.utils
import pytest

from authority.app import create_app
from authority.config import AuthorityConfig
from clients import tokens
from tests.support import postgres
from tests.support.devstack import dev  # noqa: F401  (a fixture: `sable dev` on free ports)
from tests.support.fakes import FakeDischarger

AUTHORITY_URL = "http://authority.test"
BACKENDS = ("sqlite", "postgresql")


# --- PostgreSQL: one throwaway cluster per run, an empty database per test ----------------------

_pg_missing: list[str] = []


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = postgres.start_cluster()
    if cluster is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and is not installed: {postgres.HOW_TO_GET_IT}")
        pytest.skip("PostgreSQL is not installed")
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    return pg_cluster.new_database()


@pytest.fixture(scope="session")
def pgbouncer(pg_cluster):
    """PgBouncer in transaction mode in front of the cluster (SPEC §19)."""
    from tests.support.pgbouncer import HOW_TO_GET_IT, Bouncer, binary

    exe = binary()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PgBouncer is required in CI and is not installed: {HOW_TO_GET_IT}")
        pytest.skip("PgBouncer is not installed")
    bouncer = Bouncer(exe, pg_cluster.port).start()
    yield bouncer
    bouncer.destroy()


@pytest.fixture
def pooled_url(pg_cluster, pgbouncer) -> str:
    """An empty database's URL through PgBouncer."""
    return pgbouncer.dsn(pg_cluster.new_database().rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def dpop_keys(tmp_path_factory):
    """Two DPoP signers with Ed25519 keys made by `sable keygen`'s code: (a host's, a thief's)."""
    from clients import pop

    made = []
    for name in ("host.key", "thief.key"):
        path = tmp_path_factory.mktemp("keys") / name
        pop.keygen(path)
        made.append(pop.DPoPSigner(path))
    return tuple(made)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_location(request, backend, tmp_path):
    """A fresh database location for one service: `name` is its SQLite file's stem."""
    def make(name: str) -> str:
        if backend == "postgresql":
            return request.getfixturevalue("pg_url")
        if backend == "pgbouncer":  # the same, through a transaction pooler (a few modules' backend)
            return request.getfixturevalue("pooled_url")
        return str(tmp_path / f"{name}.db")
    return make


_chromium_missing: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and ("PostgreSQL is not installed" in str(report.longrepr)
                           or "PgBouncer is not installed" in str(report.longrepr)):
        _pg_missing.append(report.nodeid)
    if report.skipped and "Chromium is not installed" in str(report.longrepr):
        _chromium_missing.append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    from tests.chromium.conftest import HOW_TO_GET_CHROMIUM

    for missing, what, how in ((_pg_missing, "PostgreSQL", postgres.HOW_TO_GET_IT),
                               (_chromium_missing, "Chromium", HOW_TO_GET_CHROMIUM)):
        if not missing:
            continue
        terminalreporter.section(f"{what} tests not run")
        terminalreporter.write_line(f"{len(missing)} tests need {what}, which is not installed here:")
        for nodeid in missing[:20]:
            terminalreporter.write_line(f"  {nodeid}")
        if len(missing) > 20:
            terminalreporter.write_line(f"  ... and {len(missing) - 20} more")
        terminalreporter.write_line(f"to run them: {how}")


@pytest.fixture
def discharger() -> FakeDischarger:
    return FakeDischarger()


@pytest.fixture
def admin_token() -> str:
    return tokens.encode(tokens.ADMIN, nacl.utils.random(32))


@pytest.fixture
def authority_config(db_location, discharger, admin_token) -> AuthorityConfig:
    return AuthorityConfig(
        db_path=db_location("authority"),
        master_key=nacl.utils.random(32),
        public_url=AUTHORITY_URL,
        dischargers=(discharger.trust,),
        admin_token=admin_token,
        feed_poll_interval=0.05,
        flush_interval=0.05,
    )


class AuthorityEnv:
    """A real authority on a loopback port, with helpers that speak its HTTP API."""

    def __init__(self, client, config, discharger, admin_token):
        self.client = client
        self.config = config
        self.discharger = discharger
        self.admin = {"Authorization": f"Bearer {admin_token}"}

    @property
    def service(self):
        """The running `Authority`, for reading its store and caches."""
        from authority.app import AUTHORITY
        return self.client.app[AUTHORITY]

    async def post(self, path, body, headers=None):
        resp = await self.client.post(path, json=body, headers=headers or {})
        return resp.status, await resp.json()

    async def create_org(self, name="acme"):
        status, body = await self.post("/v1/orgs", {"name": name}, self.admin)
        assert status in (201, 409), body

    async def mint(self, caveats=(), org="acme", **extra):
        await self.create_org(org)
        status, body = await self.post("/v1/tokens", {"org": org, "caveats": list(caveats), **extra}, self.admin)
        assert status == 201, body
        return body["token"]

    async def verify(self, presented, **access):
        access = {"org": "acme", "action": "r", **access}
        return await self.post("/v1/verify", {"tokens": list(presented), "access": access})

    async def allowed(self, presented, **access) -> bool:
        status, body = await self.verify(presented, **access)
        assert status in (200, 403), body
        return status == 200


@pytest.fixture
async def authority(aiohttp_client, authority_config, discharger, admin_token) -> AuthorityEnv:
    client = await aiohttp_client(create_app(authority_config))
    return AuthorityEnv(client, authority_config, discharger, admin_token)


# --- the real discharger ---------------------------------------------------------------------

from discharger.app import create_app as create_discharger_app  # noqa: E402
from discharger.config import DischargerConfig  # noqa: E402


@pytest.fixture
def discharger_config(tmp_path, db_location, admin_token) -> DischargerConfig:
    return DischargerConfig(
        db_path=db_location("discharger"),
        master_key=bytes.fromhex("55" * 32),
        public_url="http://discharger.test",
        admin_token=admin_token,
    )


class DischargerEnv:
    def __init__(self, client, config, admin_token):
        self.client = client
        self.config = config
        self.admin = {"Authorization": f"Bearer {admin_token}"}

    @property
    def service(self):
        from discharger.app import DISCHARGER
        return self.client.app[DISCHARGER]

    async def post(self, path, body, headers=None):
        resp = await self.client.post(path, json=body, headers=headers or {})
        return resp.status, (await resp.json() if resp.status != 204 else None), resp

    async def user(self, name="alice", password="correct horse", orgs=("acme",)):
        status, body, _ = await self.post("/v1/users", {"username": name, "password": password, "orgs": list(orgs)}, self.admin)
        assert status == 201, body
        return password

    async def login(self, name="alice", password="correct horse"):
        status, body, _ = await self.post("/v1/sessions", {"username": name, "password": password})
        assert status == 201, body
        return body["session"]

    async def discharge(self, session, ticket_b64):
        return await self.post("/v1/discharges", {"ticket": ticket_b64}, {"Authorization": f"Bearer {session}"})


@pytest.fixture
async def real_discharger(aiohttp_client, discharger_config, admin_token) -> DischargerEnv:
    client = await aiohttp_client(create_discharger_app(discharger_config))
    return DischargerEnv(client, discharger_config, admin_token)
