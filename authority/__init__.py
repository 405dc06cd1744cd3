"""The Sable authority: holds root keys; mints, verifies, strips and revokes tokens."""

from clients import __version__

__all__ = ["__version__"]
