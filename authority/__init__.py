"""The Sable authority: holds root keys; mints, verifies, strips and revokes tokens."""

__version__ = "0.1.0"
