"""`sable keygen` and `sable attenuate --bind-key` (SPEC §14), offline, as a holder runs them."""

from __future__ import annotations

import json
import os
import stat

from clients import offline, proof_check, tokens
from tests.support import sable


def make_token() -> str:
    tok = tokens.Token(tokens.SERVICE, "http://a.test", b"\x01" + bytes(16), (tokens.RawCaveat(b"org acme"),), bytes(32))
    return tok.encode()


def test_keygen_writes_a_private_key_and_its_public_jwk(tmp_path):
    r = sable(dict(os.environ), "keygen", "--out", str(tmp_path / "host.key"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["jkt"] == proof_check.thumbprint(out["jwk"])
    assert stat.S_IMODE(os.stat(tmp_path / "host.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "host.key.pub").st_mode) == 0o644
    assert json.loads((tmp_path / "host.key.pub").read_text()) == out["jwk"]
    assert b"PRIVATE KEY" in (tmp_path / "host.key").read_bytes()

    again = sable(dict(os.environ), "keygen", "--out", str(tmp_path / "host.key"))
    assert again.returncode != 0 and "never overwritten" in again.stderr


def test_bind_key_takes_a_public_key_file_the_private_key_or_a_thumbprint(tmp_path):
    jkt = json.loads(sable(dict(os.environ), "keygen", "--out", str(tmp_path / "host.key")).stdout)["jkt"]
    token = make_token()
    for value in (str(tmp_path / "host.key.pub"), str(tmp_path / "host.key"), jkt):
        r = sable(dict(os.environ), "attenuate", token, "--bind-key", value)
        assert r.returncode == 0, r.stderr
        assert offline.inspect(r.stdout.strip())["caveats"][-1] == f"cnf-jkt {jkt}"


def test_bind_key_refuses_what_is_not_a_key(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for value in ("nonsense", str(tmp_path / "notes.txt"), str(tmp_path / "missing.pub")):
        r = sable(dict(os.environ), "attenuate", make_token(), "--bind-key", value)
        assert r.returncode != 0 and r.stderr.strip() and "Traceback" not in r.stderr, value


def test_bind_key_given_another_kind_of_key_is_a_usage_error(tmp_path):
    """An EC or RSA key, private (PEM) or public (JWK), is a usage error (exit 2) that names
    --bind-key and says only Ed25519 keys bind: not a DPoP proof's words, nor exit 1."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from joserfc.jwk import ECKey

    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    (tmp_path / "ec.key").write_bytes(pem)
    (tmp_path / "ec.key.pub").write_text(json.dumps(ECKey.import_key(pem).as_dict(private=False)))
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "rsa.key").write_bytes(rsa_pem)
    (tmp_path / "private.jwk").write_text(json.dumps({"kty": "OKP", "crv": "Ed25519", "x": "A" * 43, "d": "B" * 43}))
    for name in ("ec.key", "ec.key.pub", "rsa.key", "private.jwk"):
        r = sable(dict(os.environ), "attenuate", make_token(), "--bind-key", str(tmp_path / name))
        assert r.returncode == 2, (name, r.stderr)
        assert "--bind-key" in r.stderr and "only Ed25519 keys bind" in r.stderr, r.stderr
        assert "DPoP proof" not in r.stderr and "Error" not in r.stderr, r.stderr
