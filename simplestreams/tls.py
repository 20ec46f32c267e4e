"""TLS for the image server: load a certificate, or make and keep a self-signed one.

LXD and Incus accept only https simplestreams remotes (spec §2.1) and check the name: the TLS server
name is the certificate's first DNS SAN, else the URL host must match an IP SAN (spec §2.5). A
generated certificate therefore carries ``DNS:localhost``, ``IP:127.0.0.1``, ``IP:::1``, this host's
name and every concrete listen address, plus any names the operator adds. It is written once to the
state directory and reused while it covers those names and is not near expiry, because LXD clients pin
it (``source.certificate``, ``servercerts/<remote>.crt``): a new one at every start would break them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .errors import ConfigError

log = logging.getLogger("simplestreams.tls")

VALIDITY = dt.timedelta(days=825)  # the longest lifetime Apple's and others' clients accept
RENEW_BEFORE = dt.timedelta(days=30)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def wanted_names(
    extra: Iterable[str] = (), listen_hosts: Iterable[str] = ()
) -> tuple[set[str], set[IPAddress]]:
    dns = {"localhost", socket.gethostname()}
    ips: set[IPAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for raw in [*extra, *listen_hosts]:
        name = raw.strip("[]")
        if not name or name in ("0.0.0.0", "::"):
            continue
        try:
            ips.add(ipaddress.ip_address(name))
        except ValueError:
            dns.add(name)
    return dns, ips


def _covers(cert: x509.Certificate, dns: set[str], ips: set[IPAddress]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    return dns <= have_dns and ips <= have_ips


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write crash-safely: a temp file in the same directory, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def self_signed(state_dir: Path, dns: set[str], ips: set[IPAddress]) -> tuple[Path, Path]:
    """The certificate and key under ``state_dir``, generated when missing, expiring or too narrow."""
    cert_path, key_path = state_dir / "tls.crt", state_dir / "tls.key"
    now = dt.datetime.now(dt.UTC)
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.not_valid_after_utc - RENEW_BEFORE > now and _covers(cert, dns, ips):
                return cert_path, key_path
            log.info("regenerating %s: expiring or missing a name", cert_path)
        except ValueError as exc:
            log.warning("regenerating unreadable %s: %s", cert_path, exc)
    state_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    first = sorted(dns - {"localhost"})[:1] or ["localhost"]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first[0][:64])])
    # localhost first: LXD uses the first DNS SAN as the TLS server name (spec §2.5).
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.DNSName(name) for name in sorted(dns - {"localhost"})]
    names += [x509.IPAddress(ip) for ip in sorted(ips, key=lambda ip: (ip.version, int(ip)))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key_path, key_pem, 0o600)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    log.info(
        "generated a self-signed certificate %s (sha256 %s) for %s",
        cert_path,
        fingerprint,
        ", ".join([*sorted(dns), *map(str, sorted(ips, key=str))]),
    )
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context (LXD's minimum is 1.2, spec §2.5)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("tls_cert", f"cannot load the TLS certificate {cert} / key {key}: {exc}") from exc
    context.set_alpn_protocols(["http/1.1"])
    return context
