"""Opening authentication tickets with the discharger's X25519 private keys (hazmat)."""

from __future__ import annotations

import nacl.exceptions
import nacl.public

from clients.errors import TicketError
from clients.tickets import TicketContents, decode_payload, ticket_kid


def unseal_ticket(private_keys: dict[str, nacl.public.PrivateKey], ticket: bytes) -> TicketContents:
    """Decrypt a ticket with the key its kid names. Raises TicketError on any defect."""
    key = private_keys.get(ticket_kid(ticket))
    if key is None:
        raise TicketError("ticket names an unknown key id")
    try:
        plain = nacl.public.SealedBox(key).decrypt(ticket[9:])
    except (nacl.exceptions.CryptoError, ValueError):
        raise TicketError("ticket cannot be opened") from None
    return decode_payload(plain, ticket[0])
