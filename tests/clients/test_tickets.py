"""Tickets (`clients.tickets`): what they seal, and 0.1.0 tickets still opening."""

import json

import nacl.public
import pytest

from clients import tickets
from clients.errors import TicketError
from discharger.tickets import unseal_ticket


def keys():
    private = nacl.public.PrivateKey.generate()
    public = bytes(private.public_key)
    return {tickets.key_id(public): private}, public


def test_seal_and_open_carry_purpose_name_and_role():
    private, public = keys()
    got = unseal_ticket(private, tickets.seal(public, bytes(range(32)), "acme", 120, "user", "ci-deploy", "admin"))
    assert got == tickets.TicketContents(bytes(range(32)), "acme", 120, "user", "ci-deploy", "admin")


def test_a_0_1_0_ticket_is_a_permission_token_needing_member():
    assert tickets.decode_payload(json.dumps({"k": tickets.b64e(bytes(32)), "org": "acme", "ttl": 60}).encode()) \
        == tickets.TicketContents(bytes(32), "acme", 60, "permission", None, "member")


@pytest.mark.parametrize("extra", [{"p": "root"}, {"r": "owner"}, {"n": 5}, {"p": None}, {"r": ["admin"]}])
def test_unknown_purposes_roles_and_names_are_refused(extra):
    body = {"k": tickets.b64e(bytes(32)), "org": "acme", "ttl": 60, **extra}
    with pytest.raises(TicketError):
        tickets.decode_payload(json.dumps(body).encode())


def test_a_payload_that_is_not_an_object_is_refused():
    with pytest.raises(TicketError):
        tickets.decode_payload(b"[1, 2]")


def test_a_ticket_for_a_principal_is_version_2_and_only_then_names_one():
    """Version 0x02 exists so that a discharger before 0.7 refuses a principal's ticket (400)
    rather than discharging it for whoever has a session; the payload and the version byte
    must agree, so a version-1 ticket can never carry a principal, nor version 2 lack one."""
    import nacl.public

    from discharger.tickets import unseal_ticket

    key = nacl.public.PrivateKey.generate()
    kid = tickets.key_id(bytes(key.public_key))
    for_ci = tickets.seal(bytes(key.public_key), bytes(32), "acme", 300, principal="ci:deploy")
    plain = tickets.seal(bytes(key.public_key), bytes(32), "acme", 300)
    assert (for_ci[0], plain[0]) == (2, 1)
    assert unseal_ticket({kid: key}, for_ci).principal == "ci:deploy"
    assert unseal_ticket({kid: key}, plain).principal is None
    payload = {"k": tickets.b64e(bytes(32)), "org": "acme", "ttl": 60}
    with pytest.raises(TicketError):
        tickets.decode_payload(json.dumps({**payload, "f": "ci:deploy"}).encode(), version=1)
    with pytest.raises(TicketError):
        tickets.decode_payload(json.dumps(payload).encode(), version=2)
    for bad in ("deploy", "ci:Deploy", "ci:" + "a" * 41, 5):
        with pytest.raises(TicketError):
            tickets.decode_payload(json.dumps({**payload, "f": bad}).encode(), version=2)
    with pytest.raises(TicketError):
        tickets.ticket_kid(bytes([3]) + for_ci[1:])
