"""What both services share and no client needs: the HTTP kit, settings, logs, audit,
rate limits, the SQLite base, and the launcher with the server-side CLI commands."""
