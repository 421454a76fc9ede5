"""Per-user tokens (jsongle.signaling.tokens): keys and tokens made here, verified by PyJWT."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from jsongle.config import Config, ConfigError, load_config
from jsongle.signaling.tokens import EXPIRED, INVALID, MISSING, Claims, TokenRefused, TokenVerifier, verifier_from_config

SECRET = "s" * 40


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(private: Any) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_public(tmp_path: Path, private: Any, name: str = "key.pem") -> str:
    path = tmp_path / name
    path.write_bytes(public_pem(private))
    return str(path)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600, **extra}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def handmade(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    """A token built without PyJWT: what an attacker can send."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode("ascii")) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def refused(verifier: TokenVerifier, token: Any) -> str:
    with pytest.raises(TokenRefused) as info:
        verifier.verify(token)
    return info.value.reason


def secret_verifier(**config: Any) -> TokenVerifier:
    verifier = verifier_from_config(Config(jwt_secret=SECRET, **config))
    assert verifier is not None
    return verifier


# -- the three algorithm families --------------------------------------------


def test_hs256_secret() -> None:
    verifier = secret_verifier()
    assert verifier.algorithms == ("HS256",)
    token = jwt.encode(claims(name="Alice", rooms=["r1", "team-*"]), SECRET, algorithm="HS256")
    got = verifier.verify(token)
    assert got.sub == "alice"
    assert got.name == "Alice"
    assert got.rooms == ("r1", "team-*")
    assert got.expires is not None and got.expires > time.time()


def test_hs512_listed() -> None:
    verifier = verifier_from_config(Config(jwt_secret="k" * 64, jwt_algorithms=("HS256", "HS512")))
    assert verifier is not None
    assert verifier.verify(jwt.encode(claims(), "k" * 64, algorithm="HS512")).sub == "alice"
    # HS384 was not listed: refused even with the right secret.
    assert refused(verifier, jwt.encode(claims(), "k" * 64, algorithm="HS384")) == INVALID


def test_wrong_secret() -> None:
    assert refused(secret_verifier(), jwt.encode(claims(), "t" * 40, algorithm="HS256")) == INVALID


def test_rs256_public_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = verifier_from_config(Config(jwt_public_key=write_public(tmp_path, rsa_key)))
    assert verifier is not None
    assert verifier.algorithms == ("RS256",)
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256")).sub == "alice"
    # PS256 fits the key but is not listed by default.
    assert refused(verifier, jwt.encode(claims(), rsa_key, algorithm="PS256")) == INVALID
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(verifier, jwt.encode(claims(), other, algorithm="RS256")) == INVALID


def test_rsa_listed_algorithms(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    config = Config(jwt_public_key=write_public(tmp_path, rsa_key), jwt_algorithms=("RS256", "PS512"))
    verifier = verifier_from_config(config)
    assert verifier is not None
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="PS512")).sub == "alice"


def test_es256_public_key(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = verifier_from_config(Config(jwt_public_key=write_public(tmp_path, ec_key)))
    assert verifier is not None
    assert verifier.algorithms == ("ES256",)
    assert verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256")).sub == "alice"


@pytest.mark.parametrize(("curve", "algorithm"), [(ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")])
def test_ec_curve_picks_the_algorithm(tmp_path: Path, curve: Any, algorithm: str) -> None:
    private = ec.generate_private_key(curve)
    verifier = verifier_from_config(Config(jwt_public_key=write_public(tmp_path, private)))
    assert verifier is not None
    assert verifier.algorithms == (algorithm,)
    assert verifier.verify(jwt.encode(claims(), private, algorithm=algorithm)).sub == "alice"


def test_eddsa_public_key(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey) -> None:
    verifier = verifier_from_config(Config(jwt_public_key=write_public(tmp_path, ed_key)))
    assert verifier is not None
    assert verifier.algorithms == ("EdDSA",)
    assert verifier.verify(jwt.encode(claims(), ed_key, algorithm="EdDSA")).sub == "alice"


def test_certificate_file(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ec_key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(ec_key, hashes.SHA256())
    )
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    verifier = verifier_from_config(Config(jwt_public_key=str(path)))
    assert verifier is not None
    assert verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256")).sub == "alice"


# -- what an attacker sends ----------------------------------------------------


def test_alg_none_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    unsigned = handmade({"alg": "none", "typ": "JWT"}, claims())
    assert refused(secret_verifier(), unsigned) == INVALID
    rsa_verifier = verifier_from_config(Config(jwt_public_key=write_public(tmp_path, rsa_key)))
    assert refused(rsa_verifier, unsigned) == INVALID
    assert refused(rsa_verifier, handmade({"alg": "None"}, claims())) == INVALID


def test_hs256_forged_with_the_public_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: Any) -> None:
    """Algorithm confusion: the public key's PEM used as an HMAC secret."""
    for private in (rsa_key, ec_key):
        pem = public_pem(private)
        verifier = verifier_from_config(Config(jwt_public_key=write_public(tmp_path, private)))
        forged = handmade({"alg": "HS256", "typ": "JWT"}, claims(), lambda data: hmac.new(pem, data, hashlib.sha256).digest())
        assert refused(verifier, forged) == INVALID


def test_signature_of_another_payload(tmp_path: Path) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    header, _, signature = token.split(".")
    tampered = f"{header}.{b64(json.dumps(claims(sub='mallory')).encode())}.{signature}"
    assert refused(secret_verifier(), tampered) == INVALID


@pytest.mark.parametrize(
    "token",
    ["abc", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0", "eyJ.eyJ.xx", "x" * 20000, 42, ["t"], {"sub": "a"}],
)
def test_malformed(token: Any) -> None:
    assert refused(secret_verifier(), token) == INVALID


@pytest.mark.parametrize("token", [None, ""])
def test_missing(token: Any) -> None:
    assert refused(secret_verifier(), token) == MISSING


# -- claims --------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"exp": int(time.time()) + 600},
        {"sub": "", "exp": int(time.time()) + 600},
        {"sub": 7},
        {"sub": None},
        {"sub": "a", "name": 3},
        {"sub": "a", "rooms": "r1"},
        {"sub": "a", "rooms": ["r1", 2]},
        {"sub": "a", "rooms": [""]},
    ],
)
def test_bad_claims(payload: dict[str, Any]) -> None:
    assert refused(secret_verifier(), jwt.encode(payload, SECRET, algorithm="HS256")) == INVALID


def test_no_exp_no_expiry() -> None:
    got = secret_verifier().verify(jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256"))
    assert got == Claims("bob", None, None, None)


def test_expired() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 120), SECRET, algorithm="HS256")
    assert refused(secret_verifier(), token) == EXPIRED


def test_not_before() -> None:
    token = jwt.encode(claims(nbf=int(time.time()) + 120), SECRET, algorithm="HS256")
    assert refused(secret_verifier(), token) == EXPIRED


def test_leeway() -> None:
    """10 s past exp (or before nbf): inside the default 30 s, outside a 0 s leeway."""
    now = int(time.time())
    late = jwt.encode(claims(exp=now - 10), SECRET, algorithm="HS256")
    early = jwt.encode(claims(nbf=now + 10), SECRET, algorithm="HS256")
    assert secret_verifier().verify(late).sub == "alice"
    assert secret_verifier().verify(early).sub == "alice"
    strict = secret_verifier(jwt_leeway=0.0)
    assert refused(strict, late) == EXPIRED
    assert refused(strict, early) == EXPIRED


def test_expired_with_a_bad_signature_is_invalid() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 120), "t" * 40, algorithm="HS256")
    assert refused(secret_verifier(), token) == INVALID


def test_issuer() -> None:
    verifier = secret_verifier(jwt_issuer="https://auth.example")
    assert verifier.verify(jwt.encode(claims(iss="https://auth.example"), SECRET, algorithm="HS256")).sub == "alice"
    assert refused(verifier, jwt.encode(claims(iss="https://evil.example"), SECRET, algorithm="HS256")) == INVALID
    assert refused(verifier, jwt.encode(claims(), SECRET, algorithm="HS256")) == INVALID
    # Not configured: any issuer passes.
    assert secret_verifier().verify(jwt.encode(claims(iss="anyone"), SECRET, algorithm="HS256")).sub == "alice"


def test_audience() -> None:
    verifier = secret_verifier(jwt_audience="jsongle")
    assert verifier.verify(jwt.encode(claims(aud="jsongle"), SECRET, algorithm="HS256")).sub == "alice"
    assert verifier.verify(jwt.encode(claims(aud=["web", "jsongle"]), SECRET, algorithm="HS256")).sub == "alice"
    assert refused(verifier, jwt.encode(claims(aud="other"), SECRET, algorithm="HS256")) == INVALID
    assert refused(verifier, jwt.encode(claims(), SECRET, algorithm="HS256")) == INVALID
    # Not configured: a token's aud is not looked at.
    assert secret_verifier().verify(jwt.encode(claims(aud="other"), SECRET, algorithm="HS256")).sub == "alice"


@pytest.mark.parametrize(
    ("rooms", "rid", "allowed"),
    [
        (None, "anything", True),
        (("r1",), "r1", True),
        (("r1",), "r10", False),
        (("team-*",), "team-blue", True),
        (("team-*",), "team-", True),
        (("team-*",), "tea", False),
        (("#muc#sales*", "r1"), "#muc#sales-eu", True),
        (("*",), "x", True),
        ((), "r1", False),
        (("r*1",), "r21", False),
    ],
)
def test_rooms_claim(rooms: Any, rid: str, allowed: bool) -> None:
    assert Claims("a", rooms=rooms).may_join(rid) is allowed


# -- configuration -------------------------------------------------------------


def config_error(config: Config) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        verifier_from_config(config)
    return info.value


def test_no_keys_no_verifier() -> None:
    assert verifier_from_config(Config()) is None


@pytest.mark.parametrize("field", ["jwt_algorithms", "jwt_issuer", "jwt_audience"])
def test_settings_without_a_key(field: str) -> None:
    value: Any = ("HS256",) if field == "jwt_algorithms" else "x"
    error = config_error(dataclasses.replace(Config(), **{field: value}))
    assert "neither jwtSecret nor jwtPublicKey" in str(error)


def test_both_keys(tmp_path: Path, ec_key: Any) -> None:
    error = config_error(Config(jwt_secret=SECRET, jwt_public_key=write_public(tmp_path, ec_key)))
    assert error.key == "jwtPublicKey"


def test_hmac_with_public_key_is_algorithm_confusion(tmp_path: Path, rsa_key: Any) -> None:
    error = config_error(Config(jwt_public_key=write_public(tmp_path, rsa_key), jwt_algorithms=("RS256", "HS256")))
    assert error.key == "jwtAlgorithms"
    assert "algorithm confusion" in str(error)


def test_algorithm_of_another_family(tmp_path: Path, ec_key: Any) -> None:
    error = config_error(Config(jwt_public_key=write_public(tmp_path, ec_key), jwt_algorithms=("ES384",)))
    assert error.key == "jwtAlgorithms" and "use ES256" in str(error)
    error = config_error(Config(jwt_public_key=write_public(tmp_path, ec_key), jwt_algorithms=("RS256",)))
    assert error.key == "jwtAlgorithms"


def test_asymmetric_algorithm_with_secret() -> None:
    error = config_error(Config(jwt_secret=SECRET, jwt_algorithms=("RS256",)))
    assert error.key == "jwtAlgorithms" and "needs jwtPublicKey" in str(error)


def test_unknown_algorithm() -> None:
    assert config_error(Config(jwt_secret=SECRET, jwt_algorithms=("HS257",))).key == "jwtAlgorithms"


def test_none_refused_by_the_config_loader() -> None:
    for value in ("none", "HS256,None", "NONE"):
        with pytest.raises(ConfigError) as info:
            load_config(None, {"jwtAlgorithms": value})
        assert info.value.key == "jwtAlgorithms"


def test_short_secret_is_refused_without_showing_it() -> None:
    error = config_error(Config(jwt_secret="short-secret"))
    assert error.key == "jwtSecret"
    assert "short-secret" not in str(error)
    assert "12 bytes" in str(error)
    assert config_error(Config(jwt_secret="x" * 40, jwt_algorithms=("HS512",))).key == "jwtSecret"


def test_unreadable_key_file(tmp_path: Path) -> None:
    error = config_error(Config(jwt_public_key=str(tmp_path / "missing.pem")))
    assert error.key == "jwtPublicKey"
    assert "cannot be read" in str(error)


@pytest.mark.parametrize("content", [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])
def test_invalid_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    error = config_error(Config(jwt_public_key=str(path)))
    assert error.key == "jwtPublicKey" and "not a PEM public key" in str(error)


def test_private_key_file(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    path = tmp_path / "private.pem"
    path.write_bytes(ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    error = config_error(Config(jwt_public_key=str(path)))
    assert error.key == "jwtPublicKey" and "private key" in str(error)


def test_small_rsa_key(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    error = config_error(Config(jwt_public_key=write_public(tmp_path, small)))
    assert error.key == "jwtPublicKey" and "1024-bit" in str(error)


def test_config_keys_parse() -> None:
    config, _ = load_config(
        None,
        {"jwtSecret": SECRET, "jwtAlgorithms": " HS256 , HS512 ", "jwtIssuer": "i", "jwtAudience": "a", "jwtLeeway": "0"},
    )
    assert config.jwt_algorithms == ("HS256", "HS512")
    assert config.jwt_leeway == 0.0
    assert load_config(None, {"jwtLeeway": "2m"})[0].jwt_leeway == 120.0
    assert Config().jwt_leeway == 30.0
    with pytest.raises(ConfigError):
        load_config(None, {"jwtLeeway": "-5"})
    assert SECRET not in repr(config)
