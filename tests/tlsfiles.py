"""Certificates for the TLS tests, made by trustme (on `cryptography`): a private CA, and a
server certificate it signs for 127.0.0.1 and localhost, written as the PEM files a master
(`--tls-cert`, `--tls-key`), a worker (`--ca`) and a client (`ca=`) are given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TLSFiles:
    ca: str  #: the CA's certificate
    cert: str  #: the server's certificate
    key: str  #: the server's private key


def write_ca(ca: trustme.CA, path: Path) -> str:
    """The CA's certificate, written to `path`."""
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def make_tls_files(directory: Path, ca: trustme.CA | None = None) -> TLSFiles:
    """A CA (`ca`, or a new one) and a server certificate and key it signed, in `directory`."""
    ca = ca or trustme.CA()
    leaf = ca.issue_cert(*SERVER_NAMES)
    leaf.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "server.key"))
    return TLSFiles(
        ca=write_ca(ca, directory / "ca.pem"),
        cert=str(directory / "server.pem"),
        key=str(directory / "server.key"),
    )
