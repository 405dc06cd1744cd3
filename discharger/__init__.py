"""The Sable discharger: user logins and authentication discharges."""
