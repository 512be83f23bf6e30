"""TLS to the broker: the client's SSL context, and readable reasons for failures."""

from __future__ import annotations

import ssl

from .config import MqttConfig

__all__ = ["describe_error", "tls_context"]


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails: paho drops a
    socket whose handshake raised without closing it."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The client's TLS context: the system's CAs or ``ca_file``, TLS ≥ 1.2,
    the client certificate when given, host names checked unless ``tls_insecure``."""
    context = ssl.create_default_context(cafile=config.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file or None)
    if config.tls_insecure:
        context.check_hostname = False
    context.sslsocket_class = _ClosingSSLSocket
    return context


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed TCP or TLS connection."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate was refused: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
