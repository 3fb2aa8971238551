"""TLS contexts: the gateway's server side and the devices' (and simulator's) client side.

The gateway serves HTTPS and WSS itself when ``Settings.gateway_tls_cert`` and
``gateway_tls_key`` name a PEM certificate chain and its key; otherwise it serves plain
HTTP, which is for loopback or for running behind a reverse proxy that terminates TLS (the
production compose does that with Caddy; see deploy/README.md). A device verifies the
gateway's certificate against the system's CAs, or against one CA file (a clinic's own CA,
Caddy's local CA when testing).

Both sides use Python's defaults from ``ssl.create_default_context`` (certificate and host
name verification on the client, no SSLv3/TLS 1.0/1.1), with TLS 1.2 as the floor stated
explicitly.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from justwalk.config import ENV_PREFIX, Settings

__all__ = ["TLSConfigError", "client_context", "gateway_ssl_context", "server_context"]


class TLSConfigError(ValueError):
    """The TLS settings are incomplete or their files cannot be used; says which."""


def server_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """A server context presenting ``cert_file`` (PEM chain) with ``key_file``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def gateway_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The gateway's server context, or None when TLS is not configured (plain HTTP).

    Raises ``TLSConfigError`` naming the setting when only one of the two is given, a file
    is missing, or the certificate and key cannot be loaded (e.g. they do not match).
    """
    cert, key = settings.gateway_tls_cert, settings.gateway_tls_key
    if not cert and not key:
        return None
    cert_var, key_var = (ENV_PREFIX + n for n in ("GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY"))
    if not cert or not key:
        missing = cert_var if not cert else key_var
        raise TLSConfigError(f"{missing} is empty: {cert_var} and {key_var} go together")
    for var, path in ((cert_var, cert), (key_var, key)):
        if not Path(path).is_file():
            raise TLSConfigError(f"{var}={path!r}: no such file")
    try:
        return server_context(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(
            f"cannot serve TLS with {cert_var}={cert!r} and {key_var}={key!r}: {exc}"
        ) from exc


def client_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """A client context verifying the server against ``ca_file`` alone, or the system CAs.

    Give ``ca_file`` for a private CA (a clinic's own, Caddy's local CA when testing).
    """
    if ca_file is not None and not Path(ca_file).is_file():
        raise TLSConfigError(f"CA file {str(ca_file)!r}: no such file")
    ctx = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
