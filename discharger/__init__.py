"""The Sable discharger: user logins and authentication discharges."""

__version__ = "0.1.0"
