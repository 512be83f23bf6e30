"""TLS to an MQTT broker: the client's SSL context, and readable reasons for failures.

One set-up for every MQTT client of the project (a board's uplink, the cloud
role): the system's CAs or a CA file, TLS 1.2 at least, an optional client
certificate, host names checked unless asked otherwise.
"""

from __future__ import annotations

import ssl

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


def tls_context(
    ca_file: str = "", cert_file: str = "", key_file: str = "", *, insecure: bool = False
) -> ssl.SSLContext:
    """The client's TLS context: the system's CAs or ``ca_file``, TLS ≥ 1.2, the
    client certificate ``cert_file`` (its key in ``key_file``, or in the same
    file) when given, the broker's host name checked unless ``insecure`` (the
    chain is checked either way). Raises :class:`OSError` / :class:`ssl.SSLError`
    for a file that is missing or not PEM."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    if insecure:
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
