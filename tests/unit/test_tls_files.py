"""The checks of TLS files at start: the master's certificate and key (`serve.check_tls`) and the
worker's CA (`channel.tls_context`). Each bad file is an error naming the option and the file."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from herder.errors import HerderError
from herder.master.serve import check_tls
from herder.worker.channel import tls_context
from tests.tlsfiles import TLSFiles, make_tls_files


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return make_tls_files(tmp_path)


@pytest.fixture
def junk(tmp_path: Path) -> str:
    path = tmp_path / "junk.pem"
    path.write_text("not a PEM file\n")
    return str(path)


def test_a_certificate_and_its_key_pass(tls: TLSFiles, tmp_path: Path) -> None:
    check_tls(tls.cert, tls.key)
    check_tls(None, None)
    both = tmp_path / "both.pem"  # a key in the certificate's file needs no --tls-key
    both.write_text(Path(tls.key).read_text() + Path(tls.cert).read_text())
    check_tls(str(both), None)


def test_a_key_without_a_certificate_is_refused(tls: TLSFiles) -> None:
    with pytest.raises(HerderError, match="--tls-key needs --tls-cert"):
        check_tls(None, tls.key)


def test_an_unreadable_file_is_named(tls: TLSFiles, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(HerderError, match=r"--tls-cert: cannot read .*missing\.pem"):
        check_tls(missing, tls.key)
    with pytest.raises(HerderError, match=r"--tls-key: cannot read .*missing\.pem"):
        check_tls(tls.cert, missing)


def test_a_file_without_a_certificate_is_named(tls: TLSFiles, junk: str) -> None:
    with pytest.raises(HerderError, match=r"--tls-cert: no PEM certificate in .*junk\.pem"):
        check_tls(junk, tls.key)
    with pytest.raises(HerderError, match=r"--tls-cert: no PEM certificate in .*server\.key"):
        check_tls(tls.key, tls.cert)


def test_a_file_without_a_key_is_named(tls: TLSFiles, junk: str) -> None:
    with pytest.raises(HerderError, match=r"--tls-key: no unencrypted PEM private key in .*junk"):
        check_tls(tls.cert, junk)
    with pytest.raises(HerderError, match=r"no --tls-key given.*server\.pem"):
        check_tls(tls.cert, None)


def test_an_encrypted_key_is_refused_without_a_prompt(tls: TLSFiles, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(tls.key).read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(HerderError, match="no unencrypted PEM private key"):
        check_tls(tls.cert, str(locked))


def test_a_key_of_another_certificate_is_named(tls: TLSFiles, tmp_path: Path) -> None:
    other = trustme.CA().issue_cert("localhost")
    other_key = tmp_path / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    with pytest.raises(HerderError, match=r"--tls-key: the key in .*other\.key' is not the key"):
        check_tls(tls.cert, str(other_key))


def test_the_worker_verifies_wss_with_its_ca_or_the_system_store(tls: TLSFiles) -> None:
    assert tls_context("ws://127.0.0.1:1/x", None) is None
    assert tls_context("ws://127.0.0.1:1/x", tls.ca) is None
    context = tls_context("wss://127.0.0.1:1/x", tls.ca)
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1
    system = tls_context("wss://127.0.0.1:1/x", None)
    assert system is not None and system.verify_mode == ssl.CERT_REQUIRED


def test_a_bad_worker_ca_is_named(tmp_path: Path, junk: str) -> None:
    with pytest.raises(ValueError, match=r"--ca: cannot read .*nope\.pem"):
        tls_context("wss://127.0.0.1:1/x", str(tmp_path / "nope.pem"))
    with pytest.raises(ValueError, match=r"--ca: no PEM certificate in .*junk\.pem"):
        tls_context("ws://127.0.0.1:1/x", junk)
