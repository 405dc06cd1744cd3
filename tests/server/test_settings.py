"""Unit tests for `server.settings`: reading a TOML section and picking flag > file > default."""

from __future__ import annotations

import pytest

from clients.errors import ConfigError
from server.settings import picker, read_toml


def write(tmp_path, text: str | bytes) -> str:
    path = tmp_path / "sable.toml"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return str(path)


def test_reads_the_named_section(tmp_path):
    path = write(tmp_path, 'top = 1\n[authority]\nport = 8700\nurl = "http://a"\n[discharger]\nport = 8701\n')
    assert read_toml(path, "authority") == {"port": 8700, "url": "http://a"}
    assert read_toml(path, "discharger") == {"port": 8701}


def test_without_the_section_reads_the_top_level(tmp_path):
    path = write(tmp_path, 'port = 9000\ndb = "/var/lib/sable.db"\n')
    assert read_toml(path, "authority") == {"port": 9000, "db": "/var/lib/sable.db"}


@pytest.mark.parametrize("path", [None, ""])
def test_no_path_is_no_settings(path):
    assert read_toml(path, "authority") == {}


def test_missing_file_is_a_config_error_naming_it(tmp_path):
    path = str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError) as info:
        read_toml(path, "authority")
    assert path in info.value.message
    assert "No such file" in info.value.message


def test_invalid_toml_is_a_config_error_naming_it(tmp_path):
    path = write(tmp_path, "[authority\nport = \n")
    with pytest.raises(ConfigError) as info:
        read_toml(path, "authority")
    assert path in info.value.message and "not valid TOML" in info.value.message


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = write(tmp_path, b'port = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        read_toml(path, "authority")
    assert path in info.value.message


FLAGS = {"port": 9000, "debug": False, "host": None, "workers": 0}
FILE = {"port": 8000, "debug": True, "host": "0.0.0.0", "workers": 4, "url": "http://file"}


@pytest.mark.parametrize(("name", "default", "expected"), [
    ("port", 1, 9000),  # flag beats file
    ("debug", None, False),  # a false flag still beats the file
    ("workers", None, 0),
    ("host", "127.0.0.1", "0.0.0.0"),  # a None flag falls through to the file
    ("url", "http://default", "http://file"),  # no flag: the file
    ("missing", "fallback", "fallback"),  # neither: the default
    ("missing", None, None),
])
def test_picker_precedence(name, default, expected):
    assert picker(FLAGS, FILE)(name, default) == expected


def test_picker_default_default_is_none():
    assert picker({}, {})("anything") is None


@pytest.mark.parametrize("text, message", [
    ('[authority]\npubic_url = "http://a"\n', "unknown key 'pubic_url' in [authority] (did you mean 'public_url'?)"),
    ('[authorty]\nport = 1\n', "unknown section 'authorty' (did you mean 'authority'?)"),
    ('[authority]\nport = 1\n[discharger]\nsesion_ttl = 5\n', None),  # the other service's typo: its own load says
    ('pubic_url = "x"\n', "unknown key 'pubic_url'"),
])
def test_unknown_keys_and_sections_are_errors(tmp_path, text, message):
    from authority.config import KEYS

    path = tmp_path / "sable.toml"
    path.write_text(text)
    if message is None:
        assert read_toml(str(path), "authority", KEYS) == {"port": 1}
        return
    with pytest.raises(ConfigError) as e:
        read_toml(str(path), "authority", KEYS)
    assert message in str(e.value)


def test_the_example_config_is_accepted_by_both_services():
    from pathlib import Path

    from authority.config import KEYS as AUTHORITY_KEYS
    from discharger.config import KEYS as DISCHARGER_KEYS
    example = str(Path(__file__).resolve().parents[2] / "deploy" / "sable.toml.example")
    assert read_toml(example, "authority", AUTHORITY_KEYS)["port"] == 8700
    assert read_toml(example, "discharger", DISCHARGER_KEYS)["port"] == 8701


def test_every_setting_has_flag_env_and_toml(tmp_path, monkeypatch):
    from authority.config import load as load_authority
    from discharger.config import load as load_discharger

    path = tmp_path / "sable.toml"
    path.write_text('[authority]\npublic_url = "https://from-toml"\nworkers = 3\nport = 9000\n'
                    '[discharger]\ntrusted_proxy = "10.0.0.1"\n')
    monkeypatch.setenv("SABLE_MASTER_KEY", "44" * 32)
    config = load_authority(str(path))
    assert (config.public_url, config.workers, config.port) == ("https://from-toml", 3, 9000)
    monkeypatch.setenv("SABLE_AUTHORITY_PUBLIC_URL", "https://from-env")
    monkeypatch.setenv("SABLE_AUTHORITY_WORKERS", "2")
    config = load_authority(str(path))
    assert (config.public_url, config.workers) == ("https://from-env", 2)  # env over TOML
    config = load_authority(str(path), public_url="https://from-flag")
    assert config.public_url == "https://from-flag"  # a flag over both
    assert load_discharger(str(path)).trusted_proxies == ("10.0.0.1",)
    monkeypatch.setenv("SABLE_DISCHARGER_TRUSTED_PROXY", "10.0.0.2, 10.0.0.3")
    assert load_discharger(str(path)).trusted_proxies == ("10.0.0.2", "10.0.0.3")
    monkeypatch.setenv("SABLE_AUTHORITY_WORKERS", "99")
    with pytest.raises(ConfigError, match="workers"):
        load_authority(str(path))


def test_the_constraints_pin_every_runtime_dependency():
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {line.split("==")[0] for line in (root / "deploy" / "constraints.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    for requirement in declared:
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in deploy/constraints.txt"
