"""Server configuration: the dotenv keys of the Node.js JSONgle-Server, typed.

This module is pure on purpose: it reads one file and a mapping handed to it
(never ``os.environ`` by itself), so the twistd entry point, tests and doc
generators can all call it without a reactor or global state.

``KEYS`` is the single source of truth for key names, parsers and one-line
descriptions; defaults live on :class:`Config` (``DEFAULT_CONFIG``).
"""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple
from urllib.parse import unquote

from dotenv import dotenv_values
from dotenv.parser import parse_stream

__all__ = [
    "ALIASES",
    "DEFAULT_CONFIG",
    "KEYS",
    "LOG_LEVELS",
    "Config",
    "ConfigError",
    "KeySpec",
    "default_text",
    "help_text",
    "load_config",
    "sample_config",
]


class ConfigError(Exception):
    """A bad configuration value.

    ``str()`` names the key and the value (``wsPort: 'abc' is not an
    integer``) so an operator can fix the file without reading code.
    """

    def __init__(self, key: str, value: str, reason: str) -> None:
        super().__init__(f"{key}: {value!r} {reason}")
        self.key = key
        self.value = value
        self.reason = reason


class RedisAddress(NamedTuple):
    host: str
    port: int
    db: int
    password: "str | None"
    #: The ACL user (``redis://user:password@host``); None for ``default``.
    username: "str | None" = None
    #: ``rediss://``: TLS, the server's certificate checked.
    tls: bool = False
    #: The CA that signed the server's certificate (redisCaFile); None: the system's.
    ca_file: "str | None" = None


@dataclass(frozen=True, repr=False)
class Config:
    """The typed server configuration; every field has a working default."""

    ws_port: int = 8080
    rest_port: int = 8081
    listen_address: str = ""
    cors_policy_origin: str = ""
    max_concurrent_users: int = 10
    max_members_per_room: int = 2
    server_id: str = "jsongle-server"
    log_default_level: str = "warn"
    log_path: str = "/tmp/jsongle-server.log"
    log_files_number: int = 3
    log_file_period: float = 86400.0
    key: str = "./key.pem"
    cert: str = "./cert.pem"
    app_token: str = ""
    admin_token: str = ""
    multi_room_prefix: str = "#muc#"
    max_members_per_multi_room: int = 10
    max_multi_room_per_user: int = 10
    use_https: bool = False
    ping_interval: int = 25000
    ping_timeout: int = 20000
    max_payload: int = 1000000
    connect_timeout: int = 45000
    redis_url: str = ""
    redis_ca_file: str = ""
    node_id: str = ""
    node_timeout: float = 15.0
    reuse_port: bool = False
    max_id_length: int = 256
    max_display_name_length: int = 128
    max_member_data_bytes: int = 4096
    rate_limit_per_second: int = 50
    rate_limit_burst: int = 200
    rate_limit_disconnect: int = 100
    connect_failures_per_ip: int = 10
    connect_failure_window: float = 60.0
    max_buffered_bytes: int = 1048576
    upgrade_timeout: float = 10.0
    shutdown_timeout: float = 2.0
    redis_connect_timeout: float = 5.0
    redis_reply_timeout: float = 10.0
    self_check_timeout: float = 5.0
    resume_window: float = 120.0
    resume_buffer_bytes: int = 1048576
    demo: bool = False
    # Per-user tokens (JWT); checked against the key file by jsongle.signaling.tokens.
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_algorithms: tuple[str, ...] = ()
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_leeway: float = 30.0
    # TURN REST credentials (coturn use-auth-secret); see jsongle.signaling.turn.
    turn_secret: str = ""
    turn_uris: tuple[str, ...] = ()
    stun_uris: tuple[str, ...] = ()
    turn_ttl: float = 86400.0

    @property
    def redis_address(self) -> "RedisAddress | None":
        """redisUrl taken apart, or None for one process (empty redisUrl)."""
        match = _REDIS_URL.fullmatch(self.redis_url.strip())
        if not match:
            return None
        scheme, username, password, host, port, db = match.groups()
        return RedisAddress(
            host.strip("[]"), int(port or 6379), int(db or 0), unquote(password) if password else None,
            unquote(username) if username else None, scheme == "rediss", self.redis_ca_file or None,
        )

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """corsPolicyOrigin as a list: comma-separated origins, '' = none."""
        return tuple(o.strip() for o in self.cors_policy_origin.split(",") if o.strip())

    def __repr__(self) -> str:
        # The tokens are shared secrets: a config dumped to a log must not
        # leak it, so only whether it is set is shown.
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS:
                value = "***" if value else ""
            elif f.name == "redis_url" and value:
                value = masked_redis_url(value)
            parts.append(f"{f.name}={value!r}")
        return f"Config({', '.join(parts)})"

    __str__ = __repr__


#: Fields shown only as set or not (``***``) wherever a Config is printed.
_SECRET_FIELDS = frozenset({"app_token", "admin_token", "jwt_secret", "turn_secret"})

DEFAULT_CONFIG = Config()

LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "critical")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhdw]?)", re.ASCII | re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class _Invalid(ValueError):
    """Raised by a parser with the reason only; the loader adds key and value."""


def _require(raw: str) -> str:
    text = raw.strip()
    if not text:
        raise _Invalid("is empty; a value is required")
    return text


def _string(raw: str) -> str:
    return raw


def _non_empty_string(raw: str) -> str:
    if not raw.strip():
        raise _Invalid("is empty; a value is required")
    return raw


def _integer(raw: str) -> int:
    text = _require(raw)
    if not _INTEGER.fullmatch(text):
        raise _Invalid("is not an integer")
    return int(text)


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = _integer(raw)
        if value < minimum:
            raise _Invalid(f"must be at least {minimum}")
        return value

    return parse


def _ip_address(raw: str) -> str:
    text = raw.strip()
    if text:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise _Invalid("is not an IP address (e.g. 127.0.0.1 or ::1; empty for all interfaces)") from None
    return text


def _port(raw: str) -> int:
    value = _integer(raw)
    if not 0 <= value <= 65535:
        raise _Invalid("is not a port (0..65535)")
    return value


def _boolean(raw: str) -> bool:
    text = _require(raw).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Invalid("is not a boolean (true/false, 1/0, yes/no, on/off)")


def _log_level(raw: str) -> str:
    text = _require(raw).lower()
    if text not in LOG_LEVELS:
        raise _Invalid(f"is not a log level (one of {', '.join(LOG_LEVELS)})")
    return text


_REDIS_URL = re.compile(r"(rediss?)://(?:([^:@/]*):([^@/]*)@)?([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\])(?::([0-9]{1,5}))?(?:/([0-9]+))?/?", re.ASCII)
_NODE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}", re.ASCII)


def masked_redis_url(url: str) -> str:
    """redisUrl with its password replaced by ``***``: fit for any log."""
    return re.sub(r":[^:@/]*@", ":***@", url)


def _redis_url(raw: str) -> str:
    text = raw.strip()
    if text and not _REDIS_URL.fullmatch(text):
        raise _Invalid(
            "is not a Redis URL (redis:// or rediss:// (TLS), [[user]:password@]host[:port][/db], or empty for one process)"
        )
    return text


def _node_id(raw: str) -> str:
    text = raw.strip()
    if text and not _NODE_ID.fullmatch(text):
        raise _Invalid("is not a node id (1 to 64 letters, digits, '_', '.' or '-'; empty generates one)")
    return text


def _duration(raw: str) -> float:
    text = _require(raw)
    match = _DURATION.fullmatch(text)
    if not match:
        raise _Invalid("is not a duration (e.g. 1d, 12h, 30m, 45s, 2w or seconds)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds <= 0:
        raise _Invalid("must be a duration greater than zero")
    return seconds


def _non_negative_duration(raw: str) -> float:
    """A duration where 0 is meaningful (a leeway of none)."""
    text = _require(raw)
    if text == "0":
        return 0.0
    match = _DURATION.fullmatch(text)
    if not match:
        raise _Invalid("is not a duration (e.g. 30s, 1m, 0 or seconds)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


def _comma_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _jwt_algorithms(raw: str) -> tuple[str, ...]:
    # The names are checked against the key's family when the verifier is
    # built; "none" is refused here already, whatever the key.
    names = _comma_list(raw)
    if any(name.lower() == "none" for name in names):
        raise _Invalid("lists 'none': unsigned tokens are never accepted")
    return names


def _uris(*schemes: str) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        uris = _comma_list(raw)
        for uri in uris:
            scheme, colon, rest = uri.partition(":")
            if not colon or scheme.lower() not in schemes or not rest or any(c.isspace() for c in uri):
                raise _Invalid(f"has {uri!r}, which is not a {' or '.join(s + ':' for s in schemes)} URI")
        return uris

    return parse


class KeySpec(NamedTuple):
    """How one dotenv key maps onto :class:`Config`."""

    field: str
    parser: Callable[[str], Any]
    description: str


KEYS: Mapping[str, KeySpec] = {
    "wsPort": KeySpec(
        "ws_port", _port,
        "Port of the Socket.IO (WebSocket) server; 0 picks a free port.",
    ),
    "restPort": KeySpec(
        "rest_port", _port,
        "Port of the REST API (health, metrics); 0 picks a free port.",
    ),
    "listenAddress": KeySpec(
        "listen_address", _ip_address,
        "Interface both ports bind to; empty means all interfaces.",
    ),
    "corsPolicyOrigin": KeySpec(
        "cors_policy_origin", _string,
        "Origins allowed by CORS on wsPort, comma-separated; empty allows any origin.",
    ),
    "maxConcurrentUsers": KeySpec(
        "max_concurrent_users", _at_least(1),
        "Most users connected at the same time.",
    ),
    "maxMembersPerRoom": KeySpec(
        "max_members_per_room", _at_least(1),
        "Most members in a one-to-one (non multi-user) room.",
    ),
    "id": KeySpec(
        "server_id", _non_empty_string,
        "Identifier of this server, used as 'to' for server queries.",
    ),
    "logDefaultLevel": KeySpec(
        "log_default_level", _log_level,
        "Console log level: trace, debug, info, warn, error or fatal.",
    ),
    "logPath": KeySpec(
        "log_path", _string,
        "Log file, always written at debug level (every event) and rotated; the default is in /tmp.",
    ),
    "logFilesNumber": KeySpec(
        "log_files_number", _at_least(0),
        "Number of rotated log files kept.",
    ),
    "logFilePeriod": KeySpec(
        "log_file_period", _duration,
        "How often the log file rotates: 1d, 12h, 30m, 45s, 2w or seconds.",
    ),
    "key": KeySpec(
        "key", _string,
        "TLS private key file (PEM), used when useHTTPS is true.",
    ),
    "cert": KeySpec(
        "cert", _string,
        "TLS certificate file (PEM), used when useHTTPS is true.",
    ),
    "appToken": KeySpec(
        "app_token", _string,
        "Token clients must present to connect; empty lets anyone connect.",
    ),
    "adminToken": KeySpec(
        "admin_token", _string,
        "Bearer token for the REST admin routes (PUT /logs/levels, GET /logs); empty serves them to loopback clients only.",
    ),
    "multiRoomPrefix": KeySpec(
        "multi_room_prefix", _string,
        "Room ids starting with this prefix are multi-user rooms.",
    ),
    "maxMembersPerMultiRoom": KeySpec(
        "max_members_per_multi_room", _at_least(1),
        "Most members in a multi-user room.",
    ),
    "maxMultiRoomPerUser": KeySpec(
        "max_multi_room_per_user", _at_least(1),
        "Most multi-user rooms one user may be in.",
    ),
    "useHTTPS": KeySpec(
        "use_https", _boolean,
        "Serve both ports over TLS with key/cert; false serves plain HTTP.",
    ),
    "pingInterval": KeySpec(
        "ping_interval", _at_least(1),
        "Engine.IO ping interval, in milliseconds.",
    ),
    "pingTimeout": KeySpec(
        "ping_timeout", _at_least(1),
        "Engine.IO ping timeout, in milliseconds.",
    ),
    "maxPayload": KeySpec(
        "max_payload", _at_least(1),
        "Largest Engine.IO message accepted, in bytes.",
    ),
    "connectTimeout": KeySpec(
        "connect_timeout", _at_least(1),
        "Milliseconds a connection may wait before its Socket.IO CONNECT.",
    ),
    "redisUrl": KeySpec(
        "redis_url", _redis_url,
        "Redis shared by the processes of one cluster (redis://host:6379/0); empty keeps rooms in this process.",
    ),
    "redisCaFile": KeySpec(
        "redis_ca_file", _string,
        "CA certificate (PEM) that signed the Redis server's certificate, for a rediss:// redisUrl; empty: the system's CAs.",
    ),
    "nodeId": KeySpec(
        "node_id", _node_id,
        "This process's name in the cluster; empty generates one (host, pid and a random suffix).",
    ),
    "nodeTimeout": KeySpec(
        "node_timeout", _duration,
        "How long a silent node stays in the cluster before the others remove its members (e.g. 15s).",
    ),
    "reusePort": KeySpec(
        "reuse_port", _boolean,
        "Open wsPort with SO_REUSEPORT, so several processes share it (WebSocket-only clients; needs redisUrl).",
    ),
    "maxIdLength": KeySpec(
        "max_id_length", _at_least(1),
        "Longest id a client may send (uid, rid, id, to, transaction, sid, namespace), in characters.",
    ),
    "maxDisplayNameLength": KeySpec(
        "max_display_name_length", _at_least(1),
        "Longest display name (dn) a client may send, in characters.",
    ),
    "maxMemberDataBytes": KeySpec(
        "max_member_data_bytes", _at_least(64),
        "Largest hello description (uid, dn and any other field shown to other members), in bytes of JSON.",
    ),
    "rateLimitPerSecond": KeySpec(
        "rate_limit_per_second", _at_least(0),
        "Messages per second one connection may send on average; 0 disables the rate limit.",
    ),
    "rateLimitBurst": KeySpec(
        "rate_limit_burst", _at_least(1),
        "Messages one connection may send at once above rateLimitPerSecond.",
    ),
    "rateLimitDisconnect": KeySpec(
        "rate_limit_disconnect", _at_least(0),
        "Messages over the rate limit within one second that close the connection; 0 never closes it.",
    ),
    "connectFailuresPerIp": KeySpec(
        "connect_failures_per_ip", _at_least(0),
        "Failed CONNECTs (bad appToken or per-user token) one address may make per connectFailureWindow; 0 disables the cap.",
    ),
    "connectFailureWindow": KeySpec(
        "connect_failure_window", _duration,
        "Window of connectFailuresPerIp: 1m, 30s, 1h or seconds.",
    ),
    "maxBufferedBytes": KeySpec(
        "max_buffered_bytes", _at_least(1024),
        "Bytes waiting to be sent to one client before it is disconnected (it does not read).",
    ),
    "upgradeTimeout": KeySpec(
        "upgrade_timeout", _duration,
        "How long a client may take to finish the upgrade from polling to WebSocket.",
    ),
    "shutdownTimeout": KeySpec(
        "shutdown_timeout", _duration,
        "On SIGTERM, the longest wait for the sessions to close before exiting.",
    ),
    "redisConnectTimeout": KeySpec(
        "redis_connect_timeout", _duration,
        "How long one attempt to connect to Redis may take (redisUrl).",
    ),
    "redisReplyTimeout": KeySpec(
        "redis_reply_timeout", _duration,
        "A Redis that has not answered a command for this long is dropped and reconnected.",
    ),
    "selfCheckTimeout": KeySpec(
        "self_check_timeout", _duration,
        "How long GET /tests may take to complete its session-hello before it fails.",
    ),
    "demo": KeySpec(
        "demo", _boolean,
        "Serve the demo page (video call, chat) at /demo/ on wsPort; off in production.",
    ),
    "jwtSecret": KeySpec(
        "jwt_secret", _string,
        "Shared secret of per-user tokens (JWT, HS256/384/512), at least 32 bytes; empty: no per-user tokens (or jwtPublicKey).",
    ),
    "jwtPublicKey": KeySpec(
        "jwt_public_key", _string,
        "PEM file with the public key of per-user tokens (RSA, EC or Ed25519); instead of jwtSecret.",
    ),
    "jwtAlgorithms": KeySpec(
        "jwt_algorithms", _jwt_algorithms,
        "Accepted token algorithms, comma-separated; empty: HS256 with jwtSecret, the key's own with jwtPublicKey.",
    ),
    "jwtIssuer": KeySpec(
        "jwt_issuer", _string,
        "Required 'iss' of per-user tokens; empty: not checked.",
    ),
    "jwtAudience": KeySpec(
        "jwt_audience", _string,
        "Required 'aud' of per-user tokens; empty: not checked.",
    ),
    "jwtLeeway": KeySpec(
        "jwt_leeway", _non_negative_duration,
        "Clock skew allowed on a token's exp and nbf: 30s, 1m or seconds (0: none).",
    ),
    "turnSecret": KeySpec(
        "turn_secret", _string,
        "The TURN server's static-auth-secret (coturn use-auth-secret); empty: no TURN credentials.",
    ),
    "turnUris": KeySpec(
        "turn_uris", _uris("turn", "turns"),
        "TURN server URIs handed to clients, comma-separated (turn:host:3478?transport=udp,turns:host:5349).",
    ),
    "stunUris": KeySpec(
        "stun_uris", _uris("stun", "stuns"),
        "STUN server URIs handed to clients, comma-separated (stun:host:3478); empty: none.",
    ),
    "turnTtl": KeySpec(
        "turn_ttl", _duration,
        "How long TURN credentials stay valid: 1d, 12h or seconds.",
    ),
    "resumeWindow": KeySpec(
        "resume_window", _non_negative_duration,
        "How long a client that opted in (resume: true) and lost its transport keeps its session and rooms; 0 turns resume off.",
    ),
    "resumeBufferBytes": KeySpec(
        "resume_buffer_bytes", _at_least(1024),
        "Bytes kept per resumable session for it to catch up; an away session past it ends.",
    ),
}

# Other spellings accepted for a key (the Node.js defaults file uses the
# plural); the canonical name wins when both are given.
ALIASES: Mapping[str, str] = {"maxMultiRoomsPerUser": "maxMultiRoomPerUser"}


def _read_file(path: str) -> tuple[dict[str, str | None], list[str]]:
    """Return the file's bindings and warnings for lines dotenv skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError("--config", path, f"cannot be read: {reason}") from exc
    # interpolate=False: like Node's dotenv, "$" is literal, and the result
    # does not depend on this process's environment.
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    warnings = [
        f"cannot parse line {binding.original.line} of {path} (ignored)"
        for binding in parse_stream(io.StringIO(text))
        if binding.error
    ]
    return values, warnings


def _canonical(
    source: Mapping[str, str | None], where: str, *, warn_unknown: bool, warnings: list[str]
) -> dict[str, str]:
    """Keep the known keys of one source, resolving aliases, keyed by canonical name."""
    found: dict[str, str] = {}
    for name, value in source.items():
        canonical = ALIASES.get(name, name)
        if canonical not in KEYS:
            if warn_unknown:
                warnings.append(f"unknown configuration key {name!r} in {where} (ignored)")
            continue
        if canonical != name and canonical in source:
            warnings.append(f"both {canonical} and {name} are set in {where}; using {canonical}")
            continue
        found[canonical] = "" if value is None else value
    return found


def load_config(path: str | None, environ: Mapping[str, str]) -> tuple[Config, list[str]]:
    """Build the configuration from a dotenv file and the environment.

    The environment wins over the file, so a deployment (e.g. a systemd
    ``Environment=`` line) can override one key without editing the file.
    Unknown keys in the file are reported as warnings (likely typos); unknown
    variables in ``environ`` are ignored, since it holds PATH, HOME and the
    like. Raises :class:`ConfigError` for a bad value or an unreadable file.
    """
    warnings: list[str] = []
    raw: dict[str, str] = {}
    if path is not None:
        values, warnings = _read_file(path)
        raw.update(_canonical(values, path, warn_unknown=True, warnings=warnings))
    raw.update(_canonical(environ, "the environment", warn_unknown=False, warnings=warnings))

    fields: dict[str, Any] = {}
    for name, value in raw.items():
        spec = KEYS[name]
        try:
            fields[spec.field] = spec.parser(value)
        except ValueError as exc:
            shown = masked_redis_url(value) if name == "redisUrl" else value
            raise ConfigError(name, shown, str(exc)) from None
    config = Config(**fields)
    if config.redis_ca_file and not config.redis_url.strip().startswith("rediss://"):
        warnings.append("redisCaFile is set but redisUrl is not rediss:// (TLS): it is not used")
    return config, warnings


_DURATION_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60))
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:,@+\-]*", re.ASCII)


def default_text(key: str) -> str:
    """The default of ``key`` as one writes it in a dotenv file (``1d``, ``true``)."""
    spec = KEYS[key]
    value = getattr(DEFAULT_CONFIG, spec.field)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):  # comma lists (jwtAlgorithms, turnUris, ...)
        return ",".join(value)
    if spec.parser is _duration:
        for unit, seconds in _DURATION_UNITS:
            if value % seconds == 0:
                return f"{int(value // seconds)}{unit}"
        return f"{value:g}s"
    return str(value)


def _shown(key: str) -> str:
    return default_text(key) or "(empty)"


def help_text(width: int = 80) -> str:
    """Every key with its default and meaning, for ``twistd jsongle --help``."""
    import textwrap

    lines = [
        "Configuration keys (in the --config dotenv file, or as environment",
        "variables, which win over the file; --print-config writes a sample):",
    ]
    for key, spec in KEYS.items():
        lines.append(f"  {key} = {_shown(key)}")
        lines.extend(textwrap.wrap(spec.description, width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(lines) + "\n"


def sample_config() -> str:
    """A commented dotenv file setting every key to its default."""
    lines = [
        "# jsongle configuration (dotenv; the keys of the Node.js JSONgle-Server's .env).",
        "# Every key with its default. Environment variables of the same names win.",
        "# Use with: twistd --nodaemon jsongle --config this-file.env",
    ]
    for key, spec in KEYS.items():
        value = default_text(key)
        if not _PLAIN_VALUE.fullmatch(value):
            value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines += ["", f"# {spec.description}", f"{key}={value}"]
    return "\n".join(lines) + "\n"
