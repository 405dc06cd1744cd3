"""The container and monitoring files in deploy/ (SPEC §13): they parse, they hold to the
rules they exist for, and every metric the alerts and the dashboard query is one the services
really export (a renamed metric would otherwise leave an alert that can never fire)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from authority.metrics import AuthorityMetrics
from discharger.metrics import DischargerMetrics

DEPLOY = Path(__file__).parents[2] / "deploy"
QUERY_NAME = re.compile(r"\bsable_[a-z_]+")


def exported() -> set[str]:
    """Every sample name the two services can export (histograms with their suffixes)."""
    names: set[str] = set()
    for metrics in (AuthorityMetrics(), DischargerMetrics()):
        for family in metrics.registry.collect():
            names.add(family.name)
            names.update(s.name for s in family.samples)
            if family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
            if family.type == "counter":
                names.add(family.name + "_total")
    return names


def test_alerts_and_dashboard_query_only_real_metrics():
    known = exported()
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    rules = [r for g in alerts["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    # what the issue asks to be alerted on
    assert {"SableRevocationFeedLag", "SableServerErrors", "SableVerifyLatency", "SableDatabaseUnavailable",
            "SableLoginFailureSpike"} <= names
    dashboard = json.loads((DEPLOY / "grafana" / "sable.json").read_text())
    exprs = [r["expr"] for r in rules] + [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in QUERY_NAME.findall(e)}
    assert used and used <= known, used - known
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_compose_runs_what_spec_13_lists():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "authority-1", "authority-2", "balancer", "discharger", "prometheus"} <= set(services)
    for name in ("authority-1", "authority-2", "discharger", "discharger-trust"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    # both replicas share one database and one master key, behind the balancer
    a1, a2 = services["authority-1"], services["authority-2"]
    assert a1["environment"] == a2["environment"] and a1["command"] == a2["command"]
    assert "postgresql://" in a1["environment"]["SABLE_DATABASE_URL"]
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text()
    assert "authority-1:8700" in nginx and "authority-2:8700" in nginx
    scrape = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"authority-1:8700", "authority-2:8700", "discharger:8701"}
    # the discharger trusts X-Forwarded-For only from the authorities' fixed addresses
    proxies = [a for i, a in enumerate(services["discharger"]["command"])
               if services["discharger"]["command"][i - 1] == "--trusted-proxy"]
    ips = {a1["networks"]["sable"]["ipv4_address"], a2["networks"]["sable"]["ipv4_address"]}
    assert proxies == [f"{ip}/32" for ip in sorted(ips)]


def test_dockerfile_runs_unprivileged_with_a_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=", text, re.M)
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*readyz|SABLE_HEALTH_URL", text, re.M)
    assert "'.[otel]'" in text and "[dev]" not in text  # no dev dependencies in the image
    hadolint = Path(sys.executable).parent / "hadolint"
    r = subprocess.run([str(hadolint), str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_image_copies_every_package_the_project_installs():
    """The image builds from COPYed folders: a package missing there installs nothing and the
    `sable` entry point fails to import (as cli/ did when it was new)."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    include = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = set(re.findall(r"^COPY (\w+) \1$", (root / "deploy" / "Dockerfile").read_text(), re.M))
    assert packages <= copied, sorted(packages - copied)
