"""Certificates, keys and the admin token of one throwaway control plane.

Everything is generated fresh per control plane (in its private work dir, mode
0600) so no secret is shared between runs or checked in. A tiny CA signs the
serving certificate instead of a lone self-signed leaf because OpenSSL-based
clients (Python's ssl, hence the kubernetes client) want a real CA in the trust
store. EC P-256 keys keep generation in the milliseconds. The admin logs in with
a static bearer token (kube-apiserver --token-auth-file) whose user is in group
system:masters; the token string is kept off every log and repr.

A control plane for a real node also gets one token per component identity
(the kubelet as system:node:<name>, kube-proxy, kube-controller-manager and
kube-scheduler, each bound by the apiserver's built-in RBAC or Node
authorizer), the node's address among the serving IPs, and a client
certificate the apiserver presents to the kubelet (which trusts the same CA).
"""

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "devcluster-admin"
ADMIN_GROUP = "system:masters"
# Names and IPs the apiserver may be reached by: loopback, and the in-cluster
# `kubernetes` Service (first IP of --service-cluster-ip-range 10.96.0.0/16).
SERVING_DNS_NAMES = ["localhost", "kubernetes", "kubernetes.default",
                     "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
SERVING_IPS = ["127.0.0.1", "10.96.0.1"]
# What the apiserver shows a kubelet (logs, exec): the kubelet trusts the CA and lets this client in.
KUBELET_CLIENT = ("kube-apiserver-kubelet-client", "system:masters")
VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files, plus the admin token (never printed)."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    sa_public_key: Path
    sa_private_key: Path
    token_file: Path
    admin_token: str = field(repr=False)
    tokens: dict = field(default_factory=dict, repr=False)   # component user -> token
    kubelet_client_cert: Path = None
    kubelet_client_key: Path = None


def create(directory: Path, serving_ips=(), users=None) -> Pki:
    """Write a fresh CA, serving cert, service-account key pair and token file.

    serving_ips: more IPs for the serving cert (a node's view of the apiserver);
    users: {user: [groups]} of components that get a token of their own; with
    them comes the client certificate the apiserver shows kubelets."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key)
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = _serving_certificate(serving_key, ca_key, ca_cert, [*SERVING_IPS, *serving_ips])
    sa_key = ec.generate_private_key(ec.SECP256R1())
    token = secrets.token_urlsafe(32)
    users = users or {}
    tokens = {user: secrets.token_urlsafe(32) for user in users}

    pki = Pki(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_public_key=directory / "sa.pub",
        sa_private_key=directory / "sa.key",
        token_file=directory / "tokens.csv",
        admin_token=token,
        tokens=tokens,
    )
    _write(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(pki.serving_cert, serving_cert.public_bytes(serialization.Encoding.PEM))
    _write(pki.serving_key, _private_pem(serving_key))
    _write(pki.sa_private_key, _private_pem(sa_key))
    _write(pki.sa_public_key, sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    # token,user,uid,"group1,group2" -- the format of --token-auth-file.
    lines = [f'{token},{ADMIN_USER},{ADMIN_USER},"{ADMIN_GROUP}"']
    lines += [f'{tokens[user]},{user},{user},"{",".join(groups)}"' for user, groups in users.items()]
    _write(pki.token_file, ("\n".join(lines) + "\n").encode())
    if users:
        client_key = ec.generate_private_key(ec.SECP256R1())
        client_cert = _client_certificate(client_key, ca_key, ca_cert, KUBELET_CLIENT)
        pki = replace(pki, kubelet_client_cert=directory / "apiserver-kubelet-client.crt",
                      kubelet_client_key=directory / "apiserver-kubelet-client.key")
        _write(pki.kubelet_client_cert, client_cert.public_bytes(serialization.Encoding.PEM))
        _write(pki.kubelet_client_key, _private_pem(client_key))
    return pki


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devcluster-ca")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )


def _serving_certificate(key, ca_key, ca_cert: x509.Certificate, ips) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    sans = [x509.DNSName(n) for n in SERVING_DNS_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    return (
        _builder(name, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _client_certificate(key, ca_key, ca_cert: x509.Certificate, subject: tuple) -> x509.Certificate:
    common_name, organization = subject
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        _builder(name, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _private_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
