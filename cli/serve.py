"""`sable authority serve`, `sable discharger serve` and `sable verifier serve`: each service on its address, with
/metrics on its own when asked."""

from __future__ import annotations

import asyncio
import sys

import click

from clients import tracing
from clients.cli.common import EXIT_USAGE, fail, handle_errors
from server.launcher import announce, is_worker, serve, supervise, tls_context
from server.logs import configure_logging


def _service_options(port: int):
    def wrap(fn):
        for opt in reversed([
            click.option("--host", help="Listen address (default 127.0.0.1)."),
            click.option("--port", type=int, help=f"Listen port (default {port})."),
            click.option("--public-url", help="The URL clients use (default: the listen address)."),
            click.option("--data-dir", type=click.Path(file_okay=False), help="Where the database lives (default ./var)."),
            click.option("--db", metavar="PATH|URL",
                         help="A SQLite file or a postgresql:// URL (else SABLE_DATABASE_URL, the TOML key "
                              "`database`, or <data-dir>/<service>.db)."),
            click.option("--pooler", is_flag=True, default=None,
                         help="The database URL leads to a transaction pooler such as PgBouncer (TOML `pooler`)."),
            click.option("--listen-database", metavar="URL",
                         help="A direct PostgreSQL URL for LISTEN when --pooler is set (else the feed is polled)."),
            click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A TOML settings file."),
            click.option("--tls-cert", type=click.Path(dir_okay=False)),
            click.option("--tls-key", type=click.Path(dir_okay=False)),
            click.option("--log-level", default="INFO", show_default=True),
            click.option("--metrics-port", type=click.IntRange(1, 65535),
                         help="Serve /metrics on this port instead of the main one (which then answers 404)."),
            click.option("--metrics-host", help="The address for --metrics-port (default: --host)."),
            click.option("--master-key-file", type=click.Path(dir_okay=False), help="Else SABLE_MASTER_KEY is used."),
            click.option("--trusted-proxy", multiple=True, metavar="CIDR",
                         help="A reverse proxy whose X-Forwarded-For names the client and whose X-Forwarded-Proto "
                              "sets the scheme for cookies (at the discharger, also the authorities, whose console "
                              "starts sign-ins for browsers). Repeatable; TOML `trusted_proxy`."),
        ]):
            fn = opt(fn)
        return fn
    return wrap


def _settings(service: str, log_level: str, trusted_proxy: tuple[str, ...], **flags):
    """The service's settings from its options (and file and environment), with logging and
    tracing set up; a bad --trusted-proxy is a usage error."""
    from cli.services import services
    from server.http import parse_networks

    configure_logging(log_level)
    tracing.configure_from_env(f"sable-{service}")
    config = services()[service].load_config(flags.pop("config_path"), trusted_proxy=list(trusted_proxy) or None,
                                             **flags)
    try:
        parse_networks(config.trusted_proxies)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    return config


def _sites(app, config, tls) -> list:
    """The service's app on its address, and /metrics on its own if one is configured."""
    from server.http import METRICS, metrics_app

    sites = [(app, config.host, config.port, tls)]
    if config.metrics_port:
        sites.append((metrics_app(app[METRICS]), config.metrics_host or config.host, config.metrics_port, None))
    return sites


@click.group()
def authority():
    """The authority service."""


@authority.command("serve")
@_service_options(8700)
@click.option("--discharger", help="URL of the discharger to trust (https, or a loopback address); its keys "
                                   "come from its /v1/info, refreshed every 60 s.")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Worker processes sharing the port (SO_REUSEPORT) and the database (default 1; TOML "
                   "`workers`, env SABLE_AUTHORITY_WORKERS).")
@handle_errors
def authority_serve(tls_cert, tls_key, **flags):
    """Run the authority."""
    from authority.app import create_app

    config = _settings("authority", tls_cert=tls_cert, **flags)
    tls = tls_context(tls_cert, tls_key)
    worker = is_worker()
    if config.workers > 1 and not worker:
        sys.exit(supervise(config.workers))
    say = lambda message: click.echo(f"sable: {message}", err=True)  # noqa: E731
    asyncio.run(serve(_sites(create_app(config, say), config, tls), lambda: announce("authority", config.public_url),
                      reuse_port=worker))


@click.group()
def discharger():
    """The discharger service."""


@discharger.command("serve")
@_service_options(8701)
@click.option("--keys", type=click.Path(dir_okay=False),
              help="A 0.1.0 key file to move into the database (default <data-dir>/discharger.keys, if present).")
@click.option("--authority-url", multiple=True,
              help="An authority's public URL whose /console/ an approved browser sign-in may return to "
                   "(repeatable; TOML `authority_url`).")
@handle_errors
def discharger_serve(tls_cert, tls_key, authority_url, **flags):
    """Run the discharger."""
    from discharger.app import create_app

    config = _settings("discharger", tls_cert=tls_cert, authority_url=list(authority_url) or None, **flags)
    tls = tls_context(tls_cert, tls_key)
    asyncio.run(serve(_sites(create_app(config), config, tls), lambda: announce("discharger", config.public_url)))


# `sable discharger keys ...` lives beside the other offline database commands.
from cli.discharger_keys import keys as _keys  # noqa: E402

discharger.add_command(_keys)


@click.group()
def verifier():
    """The verifier process: cached checks for gateways and local services."""


@verifier.command("serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="A TOML file: these settings and [[route]] tables (SPEC §17).")
@click.option("--authority", help="The authority's URL (TOML `authority`, env SABLE_VERIFIER_AUTHORITY).")
@click.option("--listen", help="HOST:PORT to listen on (default 127.0.0.1:8702).")
@click.option("--gateway", type=click.Choice(["nginx", "caddy", "traefik", "envoy"]),
              help="The gateway whose headers /v1/forward-auth reads (required for it).")
@click.option("--trusted-proxy", multiple=True, metavar="CIDR",
              help="A gateway address whose forward-auth requests are believed (default loopback). Repeatable.")
@click.option("--host", help="The host every check is for (access.host; default this machine's name).")
@click.option("--instance", help="The instance every check is for (access.instance; default none).")
@click.option("--ttl", help="How long an allowed decision is cached (default 60s).")
@click.option("--stale-after", help="Fail closed when the revocation feed is silent this long (default 30s).")
@click.option("--max-entries", type=int, help="Cached decisions at most (default 100000).")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve /metrics on this port instead of the main one (which then answers 404).")
@click.option("--metrics-host", help="The address for --metrics-port (default: the listen address).")
@click.option("--log-level", default="INFO", show_default=True)
@handle_errors
def verifier_serve(config_path, log_level, trusted_proxy, metrics_host, **flags):
    """Run the verifier process."""
    from server.http import METRICS, metrics_app
    from verifier.app import create_app
    from verifier.config import load

    configure_logging(log_level)
    tracing.configure_from_env("sable-verifier")
    config = load(config_path, trusted_proxy=list(trusted_proxy) or None, metrics_host=metrics_host, **flags)
    app = create_app(config)
    sites: list = [(app, config.listen_host, config.listen_port, None)]
    if config.metrics_port:
        sites.append((metrics_app(app[METRICS]), config.metrics_host or config.listen_host, config.metrics_port, None))
    asyncio.run(serve(sites, lambda: announce("verifier", config.url)))
