"""HTTPS for `dlkit serve`: the certificate and key files checked before the server starts (uvicorn would stop on
them with a traceback, or ask for a passphrase on the terminal), the settings filled in from the environment (what a
bundle's systemd unit sets), and a uvicorn server that stops promptly under TLS. Standard library only (uvicorn is
handed in).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import replace
from pathlib import Path

from dlkit_runtime.errors import InvalidInputError
from dlkit_runtime.serving.settings import TLS_CERT_ENV, TLS_KEY_ENV, TOKEN_ENV, Settings


def from_environment(settings: Settings) -> Settings:
    """`settings` with the token and the TLS files from DLKIT_SERVE_TOKEN, DLKIT_SERVE_TLS_CERT and DLKIT_SERVE_TLS_KEY
    where they are not given, the TLS pair checked (`check_tls`).

    Raises:
        InvalidInputError: one of the TLS pair without the other, or a file missing, unreadable or not matching.
    """
    settings = replace(settings, token=settings.token or os.environ.get(TOKEN_ENV) or None,
                       tls_cert=_path(settings.tls_cert or os.environ.get(TLS_CERT_ENV)),
                       tls_key=_path(settings.tls_key or os.environ.get(TLS_KEY_ENV)))
    check_tls(settings.tls_cert, settings.tls_key)
    return settings


def _path(value) -> str | None:
    return os.fspath(value) if value else None


def check_tls(cert: str | os.PathLike | None, key: str | os.PathLike | None) -> None:
    """Checks that `cert` (a PEM certificate, its chain after it) and `key` (its unencrypted PEM private key) load
    together, as the server will load them; nothing when both are None (plain HTTP).

    Raises:
        InvalidInputError: one without the other, a file missing or unreadable, not PEM, or a key that is not the
            certificate's.
    """
    if cert is None and key is None:
        return
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise InvalidInputError(f"{given} needs {missing} too: give the certificate and its private key (PEM files), "
                                f"or neither for plain HTTP")
    for path, what, option in ((cert, "certificate", "--tls-cert"), (key, "private key", "--tls-key")):
        if not Path(path).is_file():
            raise InvalidInputError(f"no TLS {what} file {path}; give the path of a PEM file with {option}")
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            raise InvalidInputError(f"cannot read the TLS {what} {path} ({err.strerror}); let this user read it "
                                    f"(chown or chmod) or give another {option}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=os.fspath(cert))
    except ssl.SSLError:
        raise InvalidInputError(f"the TLS certificate {cert} is not a PEM certificate; give a file that starts with "
                                f"-----BEGIN CERTIFICATE----- with --tls-cert") from None
    try:  # a passphrase is refused, not asked for on the terminal (a service has none)
        context.load_cert_chain(os.fspath(cert), os.fspath(key), password=lambda: b"")
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err):
            raise InvalidInputError(f"the TLS key {key} is not the private key of the certificate {cert}; give the "
                                    f"key made with that certificate") from None
        raise InvalidInputError(f"the TLS key {key} is not an unencrypted PEM private key; give the certificate's "
                                f"key with --tls-key (one with a passphrase: openssl pkey -in KEY -out KEY.pem)"
                                ) from None


CLOSE_NOTIFY_SECONDS = 1.0  # how long a stopping server waits for an idle client's TLS close_notify


def uvicorn_server(uvicorn, config):
    """A `uvicorn.Server` for `config` that, with TLS, stops without waiting for idle clients to answer its TLS
    close_notify: a connection kept alive by a client's pool (tritonclient keeps one) would hold the stop for the
    event loop's 30 s SSL shutdown timeout, which uvicorn offers no setting for. A connection is dropped once it is
    closing, all it had to send has gone, and a second has passed; requests in flight still finish."""
    if not config.is_ssl:
        return uvicorn.Server(config)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            stopping = asyncio.ensure_future(super().shutdown(sockets))
            loop, closing_since = asyncio.get_running_loop(), {}
            while not stopping.done():
                await asyncio.wait([stopping], timeout=0.1)
                for connection in list(self.server_state.connections):
                    transport = getattr(connection, "transport", None)
                    if transport is None or not transport.is_closing() or transport.get_write_buffer_size():
                        continue
                    if loop.time() - closing_since.setdefault(id(transport), loop.time()) >= CLOSE_NOTIFY_SECONDS:
                        transport.abort()
            await stopping

    return Server(config)


__all__ = ["check_tls", "from_environment", "uvicorn_server"]
