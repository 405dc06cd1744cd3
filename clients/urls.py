"""URLs of Sable's services as settings: checked once where they enter, so that what later
appears in messages, logs and trace spans holds no credential. No aiohttp here: the
services' configuration loads this without the HTTP client."""

from __future__ import annotations

from urllib.parse import urlsplit

from clients.errors import ConfigError


def service_url(url: str, setting: str) -> str:
    """`url` without a trailing slash, once it is known to hold no user name or password:
    Sable's services take credentials in headers only, and a URL travels into messages, logs
    and trace spans (SPEC §12). ConfigError names the setting, never the URL's value."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        raise ConfigError(f"{setting} is not a URL") from None
    if "@" in netloc:
        raise ConfigError(f"{setting} holds a user name or password (user:password@): remove it; Sable sends "
                          "credentials in headers, never in URLs")
    return url.rstrip("/")
