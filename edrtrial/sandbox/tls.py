"""A local CA and a server certificate for 127.0.0.1 / localhost, made once and reused.

Reusing them keeps a configured `ca_bundle = "var/sandbox/ca.pem"` valid across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from edrtrial.sandbox.credentials import write_private

HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class CertPaths:
    """The files a client (ca_pem) and the server (cert_pem, key_pem) need."""

    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def ensure_certificates(state_dir: Path) -> CertPaths:
    """Create the CA and server certificate in `state_dir` unless all of them exist already."""
    paths = CertPaths(
        state_dir / "ca.pem", state_dir / "server-cert.pem", state_dir / "server-key.pem"
    )
    if all(p.is_file() and p.stat().st_size for p in _files(paths)):
        return paths
    state_dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="edrtrial sandbox")
    server = ca.issue_cert(*HOSTS)
    write_private(paths.key_pem, server.private_key_pem.bytes())
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    write_private(paths.cert_pem, chain)
    write_private(paths.ca_pem, ca.cert_pem.bytes())
    paths.ca_pem.chmod(0o644)
    paths.cert_pem.chmod(0o644)
    return paths


def _files(paths: CertPaths) -> tuple[Path, Path, Path]:
    return paths.ca_pem, paths.cert_pem, paths.key_pem
