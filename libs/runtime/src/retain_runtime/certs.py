"""A development certificate authority for the service mesh.

``issue_mesh(directory, names)`` writes ``ca.pem`` and, for each name, a key
and a certificate whose URI SAN is ``spiffe://retain/<name>`` and whose DNS
and IP SANs are ``localhost`` and ``127.0.0.1``. Servers use the URI SAN as
the caller's identity. Production deployments bring their own CA instead.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "retain"
VALIDITY = dt.timedelta(days=365)


def spiffe_id(name: str) -> str:
    """Return the URI SAN that identifies a mesh member."""
    return f"spiffe://{TRUST_DOMAIN}/{name}"


@dataclass(frozen=True)
class CertPaths:
    """Paths of one mesh member's certificate, key and the mesh CA."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_directory(cls, directory: Path, name: str) -> CertPaths:
        return cls(
            ca=directory / "ca.pem",
            cert=directory / f"{name}.pem",
            key=directory / f"{name}-key.pem",
        )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(directory: Path, common_name: str = "Retain development CA") -> None:
    """Write a self-signed CA certificate and key into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "ca-key.pem", key)


def issue(directory: Path, name: str) -> CertPaths:
    """Issue a certificate for one mesh member, signed by the CA in directory."""
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key(
        (directory / "ca-key.pem").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans = x509.SubjectAlternativeName(
        [
            x509.UniformResourceIdentifier(spiffe_id(name)),
            x509.DNSName("localhost"),
            x509.DNSName(name),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
    )
    usage = x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(sans, critical=False)
        .add_extension(usage, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = CertPaths.in_directory(directory, name)
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths.key, key)
    return paths


def issue_mesh(directory: Path, names: list[str]) -> dict[str, CertPaths]:
    """Create the CA if missing and a certificate for each name that lacks one."""
    if not (directory / "ca.pem").exists():
        create_ca(directory)
    issued = {}
    for name in names:
        paths = CertPaths.in_directory(directory, name)
        issued[name] = paths if paths.cert.exists() else issue(directory, name)
    return issued


def uri_sans(pem: bytes) -> list[str]:
    """Return the URI SANs of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return ext.value.get_values_for_type(x509.UniformResourceIdentifier)
