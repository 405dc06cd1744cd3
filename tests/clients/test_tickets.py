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
