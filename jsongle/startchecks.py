"""Checks of the files and ports a configuration names, before anything starts.

The config parser checks what a value looks like; whether a file can be
written or read, or a port opened, is only known on this machine at start.
Each failure becomes one line that names the key and the value (as for a
badly formed value), never a traceback.
"""

from __future__ import annotations

import errno
import os

from twisted.internet.error import CannotListenError

from jsongle.config import Config


class StartError(Exception):
    """A key whose value cannot be used here; ``str()`` is the one line to show."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"bad configuration: {key}: {value!r} {reason}")


def writable_file(key: str, path: str) -> None:
    """``path`` can be opened for appending (it is created if missing)."""
    if os.path.isdir(path):
        raise StartError(key, path, "is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise StartError(key, path, f"cannot be created: directory {parent!r} does not exist")
    if os.path.exists(path) and not os.path.isfile(path):
        # A device or a FIFO: opening it here could block (a FIFO without reader).
        if not os.access(path, os.W_OK):
            raise StartError(key, path, "cannot be written by this user")
        return
    try:
        # The real test: permissions, read-only mounts, special file systems.
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise StartError(key, path, f"cannot be written: {error.strerror or error}") from None


def readable_file(key: str, path: str) -> None:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise StartError(key, path, "is missing or unreadable")


def pem_certificates(key: str, path: str) -> None:
    """``path`` holds at least one PEM certificate (a CA bundle)."""
    readable_file(key, path)
    from OpenSSL import crypto

    with open(path, "rb") as handle:
        data = handle.read()
    try:
        crypto.load_certificate(crypto.FILETYPE_PEM, data)
    except crypto.Error:
        raise StartError(key, path, "holds no PEM certificate") from None


def check_files(config: Config) -> None:
    """Every file the configuration names, as far as it will be used."""
    writable_file("logPath", config.log_path)
    if config.redis_url and config.redis_ca_file:
        pem_certificates("redisCaFile", config.redis_ca_file)


#: The key of the port each listener opens.
PORT_KEYS = {"websocket": "wsPort", "rest": "restPort"}


def listen_error(label: str, config: Config, error: CannotListenError) -> StartError:
    """Which key a failed listen is about: the address, or the port."""
    cause = error.socketError
    code = getattr(cause, "errno", None)
    reason = getattr(cause, "strerror", None) or str(cause)
    if code in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL) or isinstance(cause, OSError) and code is None:
        return StartError("listenAddress", config.listen_address, f"cannot be listened on: {reason}")
    key = PORT_KEYS.get(label, label)
    port = error.port
    if code == errno.EADDRINUSE:
        return StartError(key, port, f"is already in use on {config.listen_address or 'all interfaces'}")
    return StartError(key, port, f"cannot be listened on: {reason}")
