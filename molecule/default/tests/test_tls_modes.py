"""The other TLS modes, each idempotent, and the self-signed CA kept across them.

Runs after the round trip (file order): it leaves the host in selfsigned mode.
On the Debian 13 host only: the modes are the role's own templates and paths,
the same on both releases, and each run of site.yml costs a minute; the
round trip and the TLS profile test run on both.
"""

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playbooks import changed_count, output, run_playbook
from pypi_client import http_status

testinfra_hosts = ["pypi-index-debian13"]


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


@pytest.fixture(scope="module")
def provided(tmp_path_factory):
    """A CA and a localhost certificate made here, as an operator's own PKI would."""
    root = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test operator CA")).issuer_name(_name("test operator CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (root / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, root / "server.key")
    return root


@pytest.fixture(scope="module")
def selfsigned_cert_before(host, index):
    return host.file(selfsigned_cert(index)).sha256sum


def selfsigned_cert(index):
    return f"{index.tls_dir}/selfsigned/server.crt"


def converge_twice(index, extra_vars):
    first = run_playbook("site.yml", extra_vars, limit=index.name)
    assert first.returncode == 0, output(first)
    second = run_playbook("site.yml", extra_vars, limit=index.name)
    assert second.returncode == 0, output(second)
    assert changed_count(second) == 0, second.stdout
    return first


def test_provided_certificate_is_served(index, selfsigned_cert_before, provided):
    converge_twice(index, {
        "pypi_index_tls_mode": "provided",
        "pypi_index_tls_cert_src": str(provided / "server.crt"),
        "pypi_index_tls_key_src": str(provided / "server.key"),
    })
    assert http_status(f"{index.url}/simple/", cafile=str(provided / "ca.pem")) == 200
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        http_status(f"{index.url}/simple/", cafile=index.ca)


def test_off_serves_plain_http(index, selfsigned_cert_before):
    first = converge_twice(index, {"pypi_index_tls_mode": "off"})
    assert "WARNING: pypi_index_tls_mode is off" in first.stdout
    assert http_status(f"{index.http_url}/simple/") == 200


def test_back_to_selfsigned_reuses_the_certificate(host, index, selfsigned_cert_before):
    result = run_playbook("site.yml", {"pypi_index_tls_mode": "selfsigned"}, limit=index.name)
    assert result.returncode == 0, output(result)
    assert host.file(selfsigned_cert(index)).sha256sum == selfsigned_cert_before
    assert http_status(f"{index.url}/simple/", cafile=index.ca) == 200
