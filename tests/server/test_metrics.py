"""/metrics on both services (SPEC §13): exact counts after a known sequence of requests,
route patterns and never raw paths, the sum over `--workers 2`, and `--metrics-port`."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients import offline
from clients.tickets import b64e
from tests.support import AuthorityProcess, free_port, sealed_ticket, strip


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from a scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict, name: str, **labels) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client) -> tuple[str, dict]:
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=")
    text = await resp.text()
    return text, samples(text)


async def test_authority_counts_a_known_sequence_exactly(authority):
    pt = await authority.mint(["apps orders"])
    other = await authority.mint(["apps billing"])
    st = (await strip(authority, pt))["token"]
    narrow = offline.attenuate(st, ["hosts worker-7"])
    for _ in range(3):
        assert await authority.allowed([st], app="orders")
    assert not await authority.allowed([st], app="billing")
    status, _ = await authority.post("/v1/revoke", {"tokens": [narrow]})  # an attenuation
    assert status == 200
    other_id = offline.inspect(other)["id"]
    resp = await authority.client.post(f"/v1/tokens/{other_id}/revoke", headers=authority.admin)
    assert resp.status == 200
    assert (await authority.client.get("/no/such/path")).status == 404
    assert (await authority.client.request("PROPFIND", "/v1/verify")).status == 405
    for _ in range(100):  # the feed applies both revocations
        if authority.service.feed.head == 2:
            break
        await asyncio.sleep(0.02)

    text, m = await scrape(authority.client)
    assert value(m, "sable_mint_total") == 2
    assert value(m, "sable_strip_total") == 1
    assert value(m, "sable_verify_total", result="allowed") == 3
    assert value(m, "sable_verify_total", result="denied") == 1
    assert value(m, "sable_revocations_total", scope="attenuation") == 1
    assert value(m, "sable_revocations_total", scope="token") == 1
    assert value(m, "sable_http_requests_total", route="/v1/verify", method="POST", status="200") == 3
    assert value(m, "sable_http_requests_total", route="/v1/verify", method="POST", status="403") == 1
    # the route's pattern, never the raw path (some paths carry one-time secrets)
    assert value(m, "sable_http_requests_total", route="/v1/tokens/{id}/revoke", method="POST", status="200") == 1
    assert other_id not in text and "/no/such/path" not in text and "PROPFIND" not in text
    assert value(m, "sable_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert value(m, "sable_http_requests_total", route="unmatched", method="other", status="405") == 1
    assert value(m, "sable_http_request_duration_seconds_count", route="/v1/verify") == 4
    assert value(m, "sable_db_commit_seconds_count") >= 5  # orgs, mints, strip, revocations
    assert value(m, "sable_cache_entries", cache="records") >= 1
    assert value(m, "sable_feed_cursor") == 2
    assert 0 <= value(m, "sable_feed_lag_seconds") < 1
    for secret in (pt, st, narrow, authority.admin["Authorization"]):
        assert secret not in text


async def test_discharger_counts_logins_discharges_and_hashing(real_discharger):
    d = real_discharger
    await d.user("alice", "correct horse")
    session = await d.login("alice", "correct horse")
    for _ in range(2):
        status, _, _ = await d.post("/v1/sessions", {"username": "alice", "password": "wrong"})
        assert status == 401
    d.service.sessions.config = replace(d.service.sessions.config, user_failures=2)  # the next one is over
    status, _, _ = await d.post("/v1/sessions", {"username": "alice", "password": "wrong"})
    assert status == 429
    status, body, _ = await d.discharge(session, b64e(sealed_ticket(d)))
    assert status == 201, body

    text, m = await scrape(d.client)
    assert value(m, "sable_logins_total", result="ok") == 1
    assert value(m, "sable_logins_total", result="failed") == 2
    assert value(m, "sable_logins_total", result="throttled") == 1
    assert value(m, "sable_discharges_total") == 1
    assert value(m, "sable_password_hash_seconds_count") >= 4  # create, login, two failures
    assert value(m, "sable_http_requests_total", route="/v1/sessions", method="POST", status="401") == 2
    assert session not in text and "correct horse" not in text


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Connection": "close"}), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


@pytest.mark.slow
def test_two_workers_report_the_sum(tmp_path, discharger, admin_token):
    """Requests spread over both workers (new connections, SO_REUSEPORT); every scrape, from
    whichever worker answers it, counts them all."""
    import json

    a = AuthorityProcess(tmp_path, str(tmp_path / "a.db"), discharger, admin_token, workers=2)
    try:
        workers, deadline = set(), time.monotonic() + 30
        n = 0
        while len(workers) < 2 and time.monotonic() < deadline:
            workers.add(json.loads(_get(a.url + "/v1/info")[1])["worker"])
            n += 1
        assert len(workers) == 2
        for _ in range(20):
            assert _get(a.url + "/healthz")[0] == 200
        time.sleep(1.5)  # gauges refresh every second in each worker
        for _ in range(6):  # scrapes land on either worker
            m = samples(_get(a.url + "/metrics")[1])
            assert value(m, "sable_http_requests_total", route="/healthz", method="GET", status="200") >= 20
            assert value(m, "sable_http_requests_total", route="/v1/info", method="GET", status="200") == n
            assert value(m, "sable_feed_cursor") == 0
    finally:
        a.stop()


@pytest.mark.slow
def test_metrics_port_moves_the_endpoint(tmp_path, discharger, admin_token):
    port = free_port()
    a = AuthorityProcess(tmp_path, str(tmp_path / "a.db"), discharger, admin_token,
                         extra_env={"SABLE_AUTHORITY_METRICS_PORT": str(port)})
    try:
        assert _get(a.url + "/metrics")[0] == 404
        status, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "sable_verify_total" in text
    finally:
        a.stop()
