"""Certificates for MQTT over TLS: a small CA, and the broker and client certificates it signs.

Every key is ECDSA P-256 (what every MQTT broker and AWS IoT accept, and
cheap on a Pi Zero), every certificate PEM. ``lichen cloud-cert`` is the
command; this module does the work. ``cryptography`` is imported only here,
and only when a certificate is made (``pip install 'lichen[mqtt]'``).

Files (``DIR`` is ``--out``)::

    DIR/ca.pem, DIR/ca.key            the CA (keep ca.key off the boards)
    DIR/client.pem, DIR/client.key    a board's client certificate, CN = node id
    DIR/server.pem, DIR/server.key    a broker's certificate, SAN = its names
    DIR/ca.pem                        a copy of the CA certificate next to each pair

Key files are written mode 0600, every file atomically.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .errors import LichenError
from .extras import require_module
from .fsutil import atomic_write

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CertError",
    "IssuedFiles",
    "make_ca",
    "make_client",
    "make_server",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CA_DAYS = 3650
LEAF_DAYS = 825  # the longest leaf lifetime browsers and most tools accept
#: certificates start an hour early: boards' clocks drift before NTP catches up
_BACKDATE = datetime.timedelta(hours=1)


class CertError(LichenError):
    """A certificate could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class IssuedFiles:
    """What was written: the certificate, its key, and the CA certificate."""

    cert: Path
    key: Path
    ca: Path
    subject: str


def _crypto() -> ModuleType:
    """cryptography, or :class:`~agent.extras.MissingExtra` naming the extra."""
    return require_module("cryptography", install="'lichen[mqtt]'", purpose="making certificates")


def _new_key() -> ec.EllipticCurvePrivateKey:
    _crypto()
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lichen"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _write(directory: Path, stem: str, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    atomic_write(key_path, _key_pem(key), mode=0o600)
    atomic_write(cert_path, _cert_pem(cert), mode=0o644)
    return cert_path, key_path


def _refuse_overwrite(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise CertError(
                f"{path} exists; nothing was changed. Fix: choose another --out, "
                "or pass --force to replace it"
            )


def make_ca(out: Path, *, name: str = "Lichen fleet CA", days: int = CA_DAYS,
            force: bool = False) -> IssuedFiles:  # fmt: skip
    """A self-signed CA in ``out`` (``ca.pem``, ``ca.key``)."""
    _crypto()
    from cryptography import x509

    out = out.resolve()
    if not force:
        _refuse_overwrite(out / CA_CERT, out / CA_KEY)
    key = _new_key()
    cert = (
        _builder(name, _name(name), key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, _sha256())
    )
    cert_path, key_path = _write(out, "ca", cert, key)
    return IssuedFiles(cert_path, key_path, cert_path, name)


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    _crypto()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    if not cert_path.is_file() or not key_path.is_file():
        raise CertError(
            f"{ca_dir} holds no CA ({CA_CERT} and {CA_KEY}). "
            f"Fix: lichen cloud-cert ca --out {ca_dir}"
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CertError(f"cannot read the CA in {ca_dir}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_path} is not an ECDSA key; make the CA with lichen cloud-cert ca")
    if cert.public_key() != key.public_key():
        raise CertError(f"{key_path} is not the key of {cert_path}")
    return cert, key


def _issue(
    ca_dir: Path,
    out: Path,
    stem: str,
    subject: str,
    *,
    server_names: list[str],
    days: int,
    force: bool,
) -> IssuedFiles:
    _crypto()
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_dir, out = ca_dir.resolve(), out.resolve()
    ca_cert, ca_key = _load_ca(ca_dir)
    if not force:
        _refuse_overwrite(out / f"{stem}.pem", out / f"{stem}.key")
    key = _new_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca_cert.subject, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in server_names]), critical=False
        )
    cert = builder.sign(ca_key, _sha256())
    cert_path, key_path = _write(out, stem, cert, key)
    ca_copy = out / CA_CERT
    if ca_copy != ca_dir / CA_CERT:
        atomic_write(ca_copy, _cert_pem(ca_cert), mode=0o644)
    return IssuedFiles(cert_path, key_path, ca_copy, subject)


def _general_name(host: str) -> x509.GeneralName:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_client(ca_dir: Path, out: Path, *, name: str, days: int = LEAF_DAYS,
                force: bool = False) -> IssuedFiles:  # fmt: skip
    """A client certificate (CN ``name``, usually the node id) signed by the CA in ``ca_dir``."""
    return _issue(ca_dir, out, "client", name, server_names=[], days=days, force=force)


def make_server(
    ca_dir: Path,
    out: Path,
    *,
    hosts: list[str],
    name: str | None = None,
    days: int = LEAF_DAYS,
    force: bool = False,
) -> IssuedFiles:
    """A broker certificate for ``hosts`` (DNS names or IP addresses, in its SAN)."""
    if not hosts:
        raise CertError("a server certificate needs at least one --host")
    for host in hosts:
        if not (_is_ip(host) or (host and not any(c in host for c in " /:@"))):
            raise CertError(f"--host {host!r} is neither a DNS name nor an IP address")
    return _issue(ca_dir, out, "server", name or hosts[0], server_names=hosts, days=days,
                  force=force)  # fmt: skip


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
