"""`[[discharger.identity_provider]]` tables (SPEC §15): each fault is a ConfigError naming the
provider and the key, before anything starts; the client secret never shows."""

from __future__ import annotations

import pytest

from clients.errors import ConfigError
from discharger import config as discharger_config
from discharger.providers import MembershipRule, parse


def table(**changes):
    base = {"name": "acme", "issuer": "https://idp.example", "client_id": "sable",
            "client_secret_file": None}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("SABLE_DISCHARGER_IDP_ACME_CLIENT_SECRET", " s3cret\n")


def test_defaults_and_the_secret_from_the_environment():
    (p,) = parse([table()])
    assert (p.display, p.scopes, p.username_claim, p.groups_claim, p.provisioning) == (
        "Sign in with acme", ("openid", "email", "profile"), "preferred_username", "groups", "existing")
    assert p.client_secret == "s3cret" and "s3cret" not in repr(p)


def test_the_secret_from_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("SABLE_DISCHARGER_IDP_ACME_CLIENT_SECRET")
    path = tmp_path / "secret"
    path.write_text("from-file\n")
    (p,) = parse([table(client_secret_file=str(path))])
    assert p.client_secret == "from-file"
    with pytest.raises(ConfigError, match="client_secret_file"):
        parse([table()])


def test_memberships_are_rules():
    (p,) = parse([table(memberships=[{"group": "g", "org": "acme", "role": "admin"}])])
    assert p.memberships == (MembershipRule("g", "acme", "admin"),)


@pytest.mark.parametrize("changes, message", [
    ({"name": "Acme!"}, "slug"),
    ({"issuer": "http://idp.example"}, "https"),
    ({"issuer": "https://u:p@idp.example"}, "user info"),
    ({"issuer": None}, "issuer is required"),
    ({"client_id": ""}, "client_id"),
    ({"scopes": ["email"]}, "openid"),
    ({"scopes": "openid"}, "list of strings"),
    ({"provisioning": "always"}, "existing or auto"),
    ({"memberships": [{"group": "g", "org": "acme"}]}, "group, org, role"),
    ({"memberships": [{"group": "g", "org": "acme", "role": "owner"}]}, "role"),
    ({"memberships": [{"group": "g", "org": "a b", "role": "member"}]}, "org"),
    ({"usernme_claim": "x"}, "unknown key 'usernme_claim'"),
])
def test_each_fault_names_itself(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse([table(**changes)])


def test_http_is_allowed_for_a_loopback_issuer_only():
    assert parse([table(issuer="http://127.0.0.1:5556")])[0].issuer == "http://127.0.0.1:5556"


def test_names_and_issuers_are_unique():
    with pytest.raises(ConfigError, match="twice"):
        parse([table(), table()])
    with pytest.raises(ConfigError, match="another provider's"):
        parse([table(), table(name="other")])


def test_a_config_file_with_providers_and_passwords_off(tmp_path):
    path = tmp_path / "sable.toml"
    path.write_text('[discharger]\npasswords = false\n[[discharger.identity_provider]]\nname = "acme"\n'
                    'issuer = "https://idp.example"\nclient_id = "sable"\n')
    loaded = discharger_config.load(str(path), master_key=bytes(32))
    assert loaded.passwords is False and [p.name for p in loaded.identity_providers] == ["acme"]
