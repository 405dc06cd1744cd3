"""The Sable discharger: user logins and authentication discharges."""

from clients import __version__

__all__ = ["__version__"]
