"""What a token allows, in one short line, from its first-party caveats: for listings (the CLI's
SCOPE column, the console's Scope column), so a full-power token stands out."""

from __future__ import annotations

SHOWN = ("apps", "actions", "hosts", "instances")


def summary(caveat_texts: list[str] | None) -> str:
    """`apps=orders actions=r hosts=w1`; `*` for apps or actions not limited; `?` for a token
    minted before its caveats were stored."""
    if caveat_texts is None:
        return "?"
    found: dict[str, str] = {}
    for text in caveat_texts:
        name, _, value = text.partition(" ")
        if name in SHOWN and name not in found:  # the first of a kind: a token's own, before any narrowing
            found[name] = value
    parts = [f"apps={found.get('apps', '*')}", f"actions={found.get('actions', '*')}"]
    parts += [f"{name}={found[name]}" for name in SHOWN[2:] if name in found]
    return " ".join(parts)
