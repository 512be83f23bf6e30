"""``lichen cloud-cert`` as a real process: a CA, broker and client certificates
that chain, keys written 0600, the config lines to paste, clear refusals."""

from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import run_lichen

pytestmark = pytest.mark.slow


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_ca_server_and_client(tmp_path: Path) -> None:
    home = tmp_path / "node"
    run_lichen("init", "--board", "generic", "--name", "t", home=home)
    node_id = run_lichen("id", home=home).stdout.strip()
    ca_dir, broker_dir, board_dir = tmp_path / "ca", tmp_path / "broker", tmp_path / "board"

    out = run_lichen("cloud-cert", "ca", "--out", str(ca_dir)).stdout
    assert str(ca_dir / "ca.pem") in out and str(ca_dir / "ca.key") in out
    out = run_lichen("cloud-cert", "server", "--ca", str(ca_dir), "--out", str(broker_dir),
                     "--host", "127.0.0.1", "--host", "broker.lan").stdout  # fmt: skip
    assert f"certfile {broker_dir / 'server.pem'}" in out and "require_certificate true" in out
    out = run_lichen(
        "cloud-cert", "client", "--ca", str(ca_dir), "--out", str(board_dir), home=home
    ).stdout
    for line in ('broker = "mqtts://', f'ca_file = "{board_dir / "ca.pem"}"',
                 f'cert_file = "{board_dir / "client.pem"}"',
                 f'key_file = "{board_dir / "client.key"}"'):  # fmt: skip
        assert line in out

    for key in (ca_dir / "ca.key", broker_dir / "server.key", board_dir / "client.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave nothing behind

    ca, server, client = (
        load(ca_dir / "ca.pem"),
        load(broker_dir / "server.pem"),
        load(board_dir / "client.pem"),
    )
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for leaf in (server, client):
        leaf.verify_directly_issued_by(ca)
        assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
        assert leaf.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert common_name(client) == node_id  # the CN defaults to this node's id
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["broker.lan"]
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (board_dir / "ca.pem").read_bytes() == (ca_dir / "ca.pem").read_bytes()


def test_refusals_are_clear(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    run_lichen("cloud-cert", "ca", "--out", str(ca_dir))
    key = (ca_dir / "ca.key").read_bytes()

    again = run_lichen("cloud-cert", "ca", "--out", str(ca_dir), check=False)
    assert again.returncode == 1 and "exists; nothing was changed" in again.stderr
    assert "--force" in again.stderr and (ca_dir / "ca.key").read_bytes() == key
    run_lichen("cloud-cert", "ca", "--out", str(ca_dir), "--force")
    assert (ca_dir / "ca.key").read_bytes() != key

    missing = run_lichen("cloud-cert", "client", "--ca", str(tmp_path / "none"),
                         "--out", str(tmp_path / "c"), "--name", "x", check=False)  # fmt: skip
    assert missing.returncode == 1
    assert "holds no CA" in missing.stderr and "lichen cloud-cert ca --out" in missing.stderr

    no_home = run_lichen("--home", str(tmp_path / "nohome"), "cloud-cert", "client", "--ca",
                         str(ca_dir), "--out", str(tmp_path / "c"), check=False)  # fmt: skip
    assert no_home.returncode == 1 and "--name CN" in no_home.stderr

    bad_host = run_lichen("cloud-cert", "server", "--ca", str(ca_dir), "--out",
                          str(tmp_path / "s"), "--host", "a b", check=False)  # fmt: skip
    assert bad_host.returncode == 1 and "neither a DNS name nor an IP address" in bad_host.stderr


def test_json_output(tmp_path: Path) -> None:
    result = run_lichen("cloud-cert", "ca", "--out", str(tmp_path / "ca"), "--json")
    data = json.loads(result.stdout)
    assert data["cert"] == str(tmp_path / "ca" / "ca.pem")
    assert data["key"] == str(tmp_path / "ca" / "ca.key")
    result = run_lichen("cloud-cert", "client", "--ca", str(tmp_path / "ca"), "--out",
                        str(tmp_path / "b"), "--name", "board-9", "--json")  # fmt: skip
    data = json.loads(result.stdout)
    assert data["subject"] == "board-9" and "cert_file" in data["config"]


def test_a_cloud_home_gets_its_own_keys_and_the_broker_key_its_owner(tmp_path: Path) -> None:
    from agent.config import parse_config
    from tests.helpers.cloud import make_cloud_home

    home = tmp_path / "cloud"
    me = make_cloud_home(home)
    ca_dir, out = tmp_path / "ca", tmp_path / "cloud-cert"
    run_lichen("cloud-cert", "ca", "--out", str(ca_dir))
    shown = run_lichen("cloud-cert", "client", "--ca", str(ca_dir), "--out", str(out),
                       home=home).stdout  # fmt: skip
    assert "[[uplinks.mqtt]]" not in shown and "cert_file" not in shown, shown
    pasted = "\n".join(line.strip() for line in shown.splitlines() if "=" in line or "[" in line)
    assert "[cloud]" in pasted
    cloud = parse_config(pasted[pasted.index("[cloud]") :]).cloud  # the lines are valid keys
    assert cloud.tls_ca == str(out / "ca.pem") and cloud.broker.startswith("mqtts://")
    assert (cloud.tls_cert, cloud.tls_key) == (str(out / "client.pem"), str(out / "client.key"))
    assert common_name(load(out / "client.pem")) == str(me.node_id)
    data = json.loads(run_lichen("cloud-cert", "client", "--ca", str(ca_dir), "--out",
                                 str(out), "--force", "--json", home=home).stdout)  # fmt: skip
    assert "tls_cert" in data["config"] and "[cloud]" in data["config"]

    shown = run_lichen("cloud-cert", "server", "--ca", str(ca_dir), "--out",
                       str(tmp_path / "broker"), "--host", "broker.lan").stdout  # fmt: skip
    key = tmp_path / "broker" / "server.key"
    assert f"chown mosquitto: {key}" in shown and f"chmod 0600 {key}" in shown, shown
