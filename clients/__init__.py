"""What holders and relying services import: the token format, caveats, SDK, caching verifier,
middleware and DPoP. No server code."""

__version__ = "0.8.0"  # Sable's version, the one place it is written (CHANGELOG.md)
