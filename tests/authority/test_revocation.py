"""What `authority/revocation.py` records (the store writes it, in the revocation's own
transaction): each revocation with the ids it revoked, nothing when nothing changed. Runs on
both backends through the API. Revocation's effects on verification are tested in
`tests/integration/test_lifecycle.py` and `tests/security/test_revocation_bypass.py`."""

from __future__ import annotations

from clients import offline, tokens
from tests.support import strip


async def rows(authority, event):
    return await authority.service.store.audit_rows(event)


async def test_a_revocation_by_id_records_what_it_revoked_and_a_repeat_records_nothing(authority):
    pt = await authority.mint()
    st = await strip(authority, pt)
    status, _ = await authority.post(f"/v1/tokens/{st['parent']}/revoke", {}, authority.admin)
    assert status == 200
    (row,) = await rows(authority, "revoke")
    assert row.token_id == st["parent"]
    assert row.detail["by"] == "id" and sorted(row.detail["revoked"]) == sorted([st["parent"], st["id"]])
    status, body = await authority.post(f"/v1/tokens/{st['parent']}/revoke", {}, authority.admin)
    assert (status, body) == (200, {"revoked": []})
    assert len(await rows(authority, "revoke")) == 1


async def test_an_attenuation_is_recorded_even_when_nothing_was_stripped_from_it(authority):
    pt = await authority.mint()
    st = (await strip(authority, pt))["token"]
    narrow = offline.attenuate(st, ["hosts worker-a"])
    status, _ = await authority.post("/v1/revoke", {"tokens": [narrow]})
    assert status == 200
    (row,) = await rows(authority, "revoke")
    assert row.token_id == tokens.parse(st).token_id
    depth = len(tokens.parse(narrow).caveats)
    assert row.detail == {"by": "value", "scope": "attenuation", "depth": depth}  # no `revoked`: none cascaded
    await authority.post("/v1/revoke", {"tokens": [narrow]})
    assert len(await rows(authority, "revoke")) == 1  # revoked already: nothing new


async def test_offboarding_a_user_without_console_sessions_records_no_logout(authority):
    status, body = await authority.post("/v1/tokens/revoke", {"user": "nobody"}, authority.admin)
    assert (status, body) == (200, {"revoked": []})
    assert await rows(authority, "console_logout") == []
    assert await rows(authority, "revoke") == []
