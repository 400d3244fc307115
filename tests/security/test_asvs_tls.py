"""scripts/check_tls.py tells a trusted certificate from an untrusted one; nginx offers TLS 1.2+ only (V12.2.2)."""

from __future__ import annotations

import importlib.util
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
Server = tuple[Path, "Callable[..., int]"]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_tls", ROOT / "scripts" / "check_tls.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_tls = _load_script()


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
          *, days: int, ca: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Path, Callable[..., int]]]:
    """Start TLS servers on demand with a chosen certificate; returns (ca.pem, start)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Test Internal CA", ca_key, None, days=365, ca=True)
    (tmp_path / "ca.pem").write_bytes(_pem(ca))
    servers: list[socket.socket] = []

    def start(kind: str, days: int = 30) -> int:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer = None if kind == "self-signed" else (ca.subject, ca_key)
        leaf = _cert("localhost", key, issuer, days=days)
        cert_file, key_file = tmp_path / f"{kind}{days}.pem", tmp_path / f"{kind}{days}.key"
        cert_file.write_bytes(_pem(leaf))
        key_file.write_bytes(_key_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        listener = socket.create_server(("127.0.0.1", 0))
        servers.append(listener)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    yield tmp_path / "ca.pem", start
    for s in servers:
        s.close()


@pytest.mark.asvs("V12.2.2")
def test_a_self_signed_certificate_is_not_trusted(tls_server: Server) -> None:
    _ca, start = tls_server
    ok, message = check_tls.check("127.0.0.1", start("self-signed"), server_name="localhost")
    assert not ok and "not trusted" in message


@pytest.mark.asvs("V12.2.2")
def test_a_certificate_from_an_unknown_ca_is_not_trusted_unless_pinned(tls_server: Server) -> None:
    ca, start = tls_server
    port = start("ca-signed")
    assert not check_tls.check("127.0.0.1", port, server_name="localhost")[0]
    ok, message = check_tls.check("127.0.0.1", port, server_name="localhost", cafile=str(ca))
    assert ok, message


@pytest.mark.asvs("V12.2.2")
def test_name_mismatch_and_near_expiry_fail(tls_server: Server) -> None:
    ca, start = tls_server
    port = start("ca-signed", days=10)
    ok, message = check_tls.check("127.0.0.1", port, server_name="localhost", cafile=str(ca))
    assert not ok and "expires in" in message
    ok, message = check_tls.check("127.0.0.1", port, server_name="evil.example", cafile=str(ca),
                                  min_days=0)
    assert not ok and "not trusted" in message


@pytest.mark.asvs("V12.2.2")
def test_the_proxy_offers_tls_1_2_and_1_3_only_with_the_operators_certificate() -> None:
    conf = (ROOT / "deploy" / "nginx" / "bastion.conf").read_text(encoding="utf-8")
    protocols = re.findall(r"ssl_protocols\s+([^;]+);", conf)
    assert protocols and all(set(p.split()) == {"TLSv1.2", "TLSv1.3"} for p in protocols)
    assert re.search(r"ssl_certificate\s+/run/secrets/tls_fullchain\.pem;", conf)
    ingress = (ROOT / "deploy" / "k8s" / "base" / "ingress.yaml").read_text(encoding="utf-8")
    assert "secretName: bastion-tls" in ingress
