"""Where each module's tests are. A module `pkg/mod.py` is tested in `tests/pkg/test_mod.py`
when that file exists; the others (tested through the API, the CLI or a neighbour) are listed
here, and this test keeps the list whole and true as modules come and go."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("clients", "server", "authority", "discharger", "verifier", "cli")

ELSEWHERE: dict[str, tuple[str, ...]] = {
    "authority/app.py": ("tests/integration/test_verify.py", "tests/integration/test_lifecycle.py"),
    "authority/audit.py": ("tests/authority/test_usage.py",),
    "authority/config.py": ("tests/server/test_settings.py",),
    "authority/console.py": ("tests/integration/test_console_sessions.py", "tests/chromium/test_console.py"),
    "authority/descriptor.py": ("tests/cli/test_db.py",),
    "authority/root_keys.py": ("tests/authority/test_records.py", "tests/server/test_master_key_rotation.py"),
    "authority/listing.py": ("tests/authority/test_selfservice.py",),
    "authority/metrics.py": ("tests/server/test_metrics.py",),
    "authority/minting.py": ("tests/integration/test_lifecycle.py", "tests/integration/test_verify.py"),
    "authority/model.py": ("tests/integration/test_verify.py",),
    "authority/pages.py": ("tests/chromium/test_console.py", "tests/security/test_browser_attacks.py"),
    "authority/schemas.py": ("tests/fuzz/test_verify_endpoint.py", "tests/integration/test_verify.py"),
    "authority/service.py": ("tests/integration/test_lifecycle.py",),
    "authority/store/postgres.py": ("tests/authority/test_store.py", "tests/authority/test_store_postgres.py"),
    "authority/store/sqlite.py": ("tests/authority/test_store.py",),
    "cli/admin.py": ("tests/server/test_master_key_rotation.py", "tests/clients/test_cli.py"),
    "cli/dev.py": ("tests/e2e/test_readme.py", "tests/clients/test_cli.py"),
    "discharger/policies.py": ("tests/discharger/test_factors.py",),
    "discharger/passkeys.py": ("tests/chromium/test_passkeys.py", "tests/discharger/test_store.py"),
    "cli/discharger_keys.py": ("tests/discharger/test_ticket_keys.py",),
    "cli/main.py": ("tests/cli/test_reference.py",),
    "cli/serve.py": ("tests/clients/test_cli.py",),
    "cli/services.py": ("tests/cli/test_db.py",),
    "cli/stores.py": ("tests/cli/test_db.py",),
    "clients/cli/acting.py": ("tests/clients/test_cli_session.py",),
    "clients/cli/completion.py": ("tests/clients/test_cli_start.py",),
    "clients/cli/contexts.py": ("tests/clients/test_cli_contexts.py",),
    "clients/cli/principals.py": ("tests/integration/test_ci.py",),
    "discharger/id_tokens.py": ("tests/discharger/test_oidc.py", "tests/discharger/test_principals.py"),
    "verifier/gateways.py": ("tests/verifier/test_app.py", "tests/integration/test_gateways.py"),
    "verifier/metrics.py": ("tests/verifier/test_app.py",),
    "clients/cli/admin.py": ("tests/clients/test_cli_users.py", "tests/clients/test_cli_offboarding.py"),
    "clients/cli/common.py": ("tests/clients/test_cli.py",),
    "clients/cli/holder.py": ("tests/clients/test_cli.py", "tests/clients/test_cli_keys.py", "tests/e2e/test_readme.py"),
    "clients/errors.py": ("tests/server/test_http.py",),
    "clients/pop.py": ("tests/clients/test_proof_check.py", "tests/clients/test_cli_keys.py", "tests/clients/test_wire_token.py"),
    "clients/tracing.py": ("tests/server/test_tracing.py",),
    "clients/urls.py": ("tests/clients/test_cli.py",),
    "discharger/app.py": ("tests/discharger/test_discharger.py",),
    "discharger/authorities.py": ("tests/discharger/test_discharger.py",),
    "discharger/browser_sessions.py": ("tests/chromium/test_discharger_pages.py", "tests/security/test_browser_attacks.py"),
    "discharger/config.py": ("tests/server/test_settings.py",),
    "discharger/descriptor.py": ("tests/cli/test_db.py",),
    "discharger/discharges.py": ("tests/discharger/test_discharger.py",),
    "discharger/metrics.py": ("tests/server/test_metrics.py",),
    "discharger/model.py": ("tests/discharger/test_discharger.py",),
    "discharger/pages.py": ("tests/chromium/test_discharger_pages.py", "tests/discharger/test_device.py"),
    "discharger/passwords.py": ("tests/security/test_login_abuse.py", "tests/discharger/test_throttle.py"),
    "discharger/schemas.py": ("tests/discharger/test_discharger.py",),
    "discharger/service.py": ("tests/discharger/test_discharger.py",),
    "discharger/sessions.py": ("tests/discharger/test_discharger.py", "tests/discharger/test_throttle.py"),
    "discharger/store/postgres.py": ("tests/discharger/test_store.py",),
    "discharger/store/sqlite.py": ("tests/discharger/test_store.py",),
    "discharger/tickets.py": ("tests/clients/test_tickets.py",),
    "discharger/users.py": ("tests/discharger/test_discharger.py", "tests/clients/test_cli_users.py"),
    "server/audit.py": ("tests/authority/test_store.py", "tests/integration/test_lifecycle.py"),
    "server/dbcopy.py": ("tests/server/test_db_copy.py",),
    "server/launcher.py": ("tests/clients/test_cli.py", "tests/e2e/test_flow.py"),
    "server/masterkey.py": ("tests/server/test_master_key_rotation.py",),
    "server/service.py": ("tests/cli/test_db.py",),
    "server/store.py": ("tests/server/test_sqlite.py", "tests/server/test_postgres.py", "tests/test_layers.py"),
}


def modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                  if p.name != "__init__.py")


def mirror(module: str) -> Path:
    path = Path(module)
    return ROOT / "tests" / path.parent / f"test_{path.name}"


def test_every_module_has_its_tests_mirrored_or_listed():
    missing = [m for m in modules() if not mirror(m).exists() and m not in ELSEWHERE]
    assert not missing, f"add tests/<package>/test_<module>.py, or list where they are in ELSEWHERE: {missing}"


def test_the_list_names_only_real_modules_without_a_mirror_and_real_tests():
    known = set(modules())
    for module, tests in ELSEWHERE.items():
        assert module in known, f"{module} is gone: remove it from ELSEWHERE"
        assert not mirror(module).exists(), f"{module} has {mirror(module).relative_to(ROOT)} now: unlist it"
        for test in tests:
            assert (ROOT / test).exists(), f"{module}: {test} does not exist"
