"""structlog set up as one JSON object per line on stdout, with request ids from context."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

QUIET_LIBRARIES = ("aiosqlite", "asyncpg", "aiohttp.access", "aiohttp.client", "aiohttp.server", "aiohttp.web",
                   "urllib3", "asyncio")


def _without_stack(record: logging.LogRecord) -> bool:
    if record.name.startswith("asyncpg") and record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        record.msg = f"{record.getMessage()}: {getattr(error, 'strerror', None) or error}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
    return True


def configure_logging(level: str = "INFO", stream: TextIO = sys.stdout) -> None:
    """JSON lines on stdout for services; tools (`sable db`, `sable discharger keys`) pass
    stderr, which keeps their stdout for results."""
    # Libraries log through the standard library: their lines become JSON objects too.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
    ))
    # asyncpg's pool logs each failed reconnect with a traceback; an outage is already one
    # `database_unavailable` line of ours, so its line keeps the error's text and no stack.
    handler.addFilter(_without_stack)
    logging.basicConfig(handlers=[handler], level=level)
    # Libraries that log queries with their parameters (usernames of failed logins, credential
    # digests) or request URLs (one-time secrets) stay at WARNING whatever the level (SPEC §12).
    floor = max(logging.WARNING, logging.getLogger().level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(floor)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
