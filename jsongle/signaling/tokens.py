"""Per-user tokens (JWT): who a connecting user is, proved by a signature.

The signature, the algorithm allow-list and the time and issuer/audience
claims are all checked by PyJWT; this module only chooses what to allow,
from the configuration, and turns PyJWT's verdict into one of the three
refusals a client can see (PROTOCOL.md §11).

The allow-list follows the key, never the token: HS* with ``jwtSecret``,
the key's own family with ``jwtPublicKey``. An HS* algorithm next to a
public key is refused at start-up, since it would let anyone who has the
public key (it is public) sign tokens with it as an HMAC secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from jsongle.config import Config, ConfigError

__all__ = [
    "EXPIRED",
    "INVALID",
    "MISSING",
    "Claims",
    "TokenRefused",
    "TokenVerifier",
    "load_public_key",
    "verifier_from_config",
]

#: The refusals a client sees in its ``connect_error`` (PROTOCOL.md §11).
MISSING = "missing token"
INVALID = "invalid token"
EXPIRED = "token expired"

#: Longer tokens are refused before they are decoded (a real one is well under 2 KiB).
MAX_TOKEN_CHARS = 16384

HMAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
#: One algorithm per curve: ES256 names P-256, and so on (RFC 7518 §3.4).
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}
KNOWN_ALGORITHMS = (*HMAC_ALGORITHMS, *RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA")
#: RSA keys below this size are refused at start-up (NIST SP 800-131A).
MIN_RSA_BITS = 2048

PublicKey = Union[rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey]


class TokenRefused(Exception):
    """A token that does not admit its holder; ``reason`` is what the client sees."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    """What a verified token says about its holder."""

    #: The user's uid: the hello must claim this one.
    sub: str
    #: The display name (``dn``) the user gets, if the token names one.
    name: Optional[str] = None
    #: Rooms the user may join (``*`` at the end: a prefix); None: any room.
    rooms: Optional[tuple[str, ...]] = None
    #: ``exp`` in Unix seconds, if the token has one.
    expires: Optional[float] = None

    def may_join(self, rid: str) -> bool:
        """Whether the ``rooms`` claim lets the user into ``rid``."""
        if self.rooms is None:
            return True
        for entry in self.rooms:
            if entry.endswith("*"):
                if rid.startswith(entry[:-1]):
                    return True
            elif entry == rid:
                return True
        return False


class TokenVerifier:
    """Checks a token against one key and a fixed list of algorithms."""

    def __init__(
        self,
        key: Union[bytes, PublicKey],
        algorithms: Sequence[str],
        *,
        issuer: str = "",
        audience: str = "",
        leeway: float = 30.0,
        description: str = "",
    ) -> None:
        if not algorithms or any(name not in KNOWN_ALGORITHMS for name in algorithms):
            raise ValueError(f"algorithms must be some of {', '.join(KNOWN_ALGORITHMS)}: {list(algorithms)!r}")
        self._key = key
        self.algorithms = tuple(algorithms)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        #: For the start-up log: the algorithms and the kind of key, never the key.
        self.description = description or ", ".join(self.algorithms)
        self._options: Any = {
            "require": ["sub"],
            "verify_signature": True,
            "verify_exp": True,
            "verify_nbf": True,
            "verify_iat": True,
            "verify_iss": bool(issuer),
            # Unset: a token's aud is not looked at (PyJWT would refuse any aud).
            "verify_aud": bool(audience),
            "enforce_minimum_key_length": True,
        }

    def verify(self, token: Any) -> Claims:
        """The claims of a valid token; raises :class:`TokenRefused` otherwise.

        Time claims (``exp``, ``nbf``, ``iat``) are checked by PyJWT against
        the system clock, with the leeway.
        """
        if token is None or token == "":
            raise TokenRefused(MISSING)
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise TokenRefused(INVALID)
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=list(self.algorithms),
                options=self._options,
                issuer=self.issuer or None,
                audience=self.audience or None,
                leeway=self.leeway,
            )
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            raise TokenRefused(EXPIRED) from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenRefused(INVALID) from None
        return _claims(payload)


def _claims(payload: dict[str, Any]) -> Claims:
    """The claims we use, each of the right type, or INVALID."""
    sub = payload.get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenRefused(INVALID)
    name = payload.get("name")
    if name is not None and not isinstance(name, str):
        raise TokenRefused(INVALID)
    rooms = payload.get("rooms")
    if rooms is not None:
        if not isinstance(rooms, list) or not all(isinstance(rid, str) and rid for rid in rooms):
            raise TokenRefused(INVALID)
        rooms = tuple(rooms)
    exp = payload.get("exp")
    return Claims(sub, name, rooms, float(exp) if isinstance(exp, (int, float)) else None)


# -- from the configuration ------------------------------------------------


def verifier_from_config(config: Config) -> Optional[TokenVerifier]:
    """The verifier the configuration asks for, or None without JWT keys.

    Raises :class:`ConfigError` naming the key for anything that would make
    tokens unsafe or never valid, so the server does not start with it.
    """
    secret, path = config.jwt_secret, config.jwt_public_key
    if secret and path:
        raise ConfigError("jwtPublicKey", path, "is set together with jwtSecret: set one of them")
    if not secret and not path:
        for key, value in (("jwtAlgorithms", ",".join(config.jwt_algorithms)), ("jwtIssuer", config.jwt_issuer), ("jwtAudience", config.jwt_audience)):
            if value:
                raise ConfigError(key, value, "is set but neither jwtSecret nor jwtPublicKey is")
        return None
    names = config.jwt_algorithms
    for name in names:
        if name not in KNOWN_ALGORITHMS:
            raise ConfigError("jwtAlgorithms", ",".join(names), f"names {name!r}, not one of {', '.join(KNOWN_ALGORITHMS)}")
    key: Union[bytes, PublicKey]
    if secret:
        key = secret.encode("utf-8")
        algorithms = names or ("HS256",)
        _check_secret(key, algorithms)
        description = f"{', '.join(algorithms)} with jwtSecret"
    else:
        key = load_public_key(path)
        allowed, default, family = _family(key)
        algorithms = names or (default,)
        for name in algorithms:
            if name in HMAC_ALGORITHMS:
                raise ConfigError(
                    "jwtAlgorithms", ",".join(algorithms),
                    f"lists {name} with jwtPublicKey: anyone could sign tokens with the public key "
                    f"as an HMAC secret (algorithm confusion); use {default}",
                )
            if name not in allowed:
                raise ConfigError("jwtAlgorithms", ",".join(algorithms), f"lists {name}, which does not fit the {family} key of jwtPublicKey; use {default}")
        description = f"{', '.join(algorithms)} with the {family} key of {path}"
    return TokenVerifier(
        key, algorithms, issuer=config.jwt_issuer, audience=config.jwt_audience, leeway=config.jwt_leeway, description=description
    )


def _check_secret(secret: bytes, algorithms: Sequence[str]) -> None:
    for name in algorithms:
        digest = HMAC_ALGORITHMS.get(name)
        if digest is None:
            raise ConfigError(
                "jwtAlgorithms", ",".join(algorithms),
                f"lists {name}, which needs jwtPublicKey; with jwtSecret use HS256, HS384 or HS512",
            )
        size = digest().digest_size
        if len(secret) < size:
            # The value is a secret: the message says its length, never the value.
            raise ConfigError(
                "jwtSecret", "***",
                f"is {len(secret)} bytes; {name} needs at least {size} (RFC 7518 §3.2), e.g. `openssl rand -base64 {size}`",
            )


def load_public_key(path: str) -> PublicKey:
    """The public key in the PEM file at ``path`` (a key or a certificate)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(1 << 20)
    except OSError as error:
        raise ConfigError("jwtPublicKey", path, f"cannot be read: {error.strerror or error}") from None
    if b"PRIVATE KEY-----" in data:
        raise ConfigError("jwtPublicKey", path, "holds a private key: give the server the public key only")
    key: Any
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except (ValueError, TypeError):
            raise ConfigError("jwtPublicKey", path, "is not a PEM public key or certificate") from None
    _family(key, path)
    return key


def _family(key: Any, path: str = "") -> tuple[Sequence[str], str, str]:
    """(the algorithms that fit ``key``, the default one, the key's family)."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError("jwtPublicKey", path, f"is a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS} bits are needed")
        return RSA_ALGORITHMS, "RS256", f"{key.key_size}-bit RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = EC_ALGORITHMS.get(key.curve.name)
        if name is None:
            raise ConfigError("jwtPublicKey", path, f"is an EC key on {key.curve.name}; JWT uses P-256, P-384, P-521 or secp256k1")
        return (name,), name, f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("EdDSA",), "EdDSA", "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return ("EdDSA",), "EdDSA", "Ed448"
    raise ConfigError("jwtPublicKey", path, f"holds a {type(key).__name__}; JWT needs an RSA, EC or Ed25519 key")
