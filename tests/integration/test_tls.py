"""The whole path over TLS: a real master serving https:// and wss:// with a certificate the test
makes, a real worker over wss:// that verifies it with --ca, the client over https:// with ca=
and the CLI with --ca. A certificate from another CA is refused by each of them, clearly; a bad
certificate or key stops the master at start, naming the file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from herder import Client, LocalCluster
from herder.client import MasterUnreachable
from herder.cluster import free_port
from tests.integration.conftest import TEST_TASKS, wait_until
from tests.tlsfiles import TLSFiles, make_tls_files, write_ca


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def cluster(tls: TLSFiles) -> Iterator[LocalCluster]:
    c = LocalCluster(workers=1, tasks=TEST_TASKS, tls_cert=tls.cert, tls_key=tls.key, ca=tls.ca)
    with c:
        yield c


@pytest.fixture
def stranger_ca(tmp_path: Path) -> str:
    """A CA that did not sign the master's certificate."""
    return write_ca(trustme.CA(), tmp_path / "stranger.pem")


def _herder(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herder", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_a_split_task_runs_over_https_and_wss(cluster: LocalCluster, tls: TLSFiles) -> None:
    assert cluster.url.startswith("https://")
    # the cluster's worker joined over wss://, verifying the master with --ca
    assert [w["name"] for w in cluster.client.workers()] == ["local-1"]
    with Client(cluster.url, ca=tls.ca) as client:
        handle = client.submit("chatty", {"parts": 3, "lines": 3, "delay": 0.01})
        events = list(handle.events())
        assert handle.result(timeout=30) == 9
    kinds = [e.kind for e in events]
    assert kinds[0] == "snapshot" and "progress" in kinds and "log" in kinds
    assert events[-1].kind == "state" and events[-1].data["state"] == "succeeded"


def test_plain_http_gets_no_answer_from_a_tls_master(cluster: LocalCluster) -> None:
    plain = cluster.url.replace("https://", "http://")
    with Client(plain, timeout=5) as client, pytest.raises(MasterUnreachable):
        client.health()


def test_the_client_refuses_another_ca(cluster: LocalCluster, stranger_ca: str) -> None:
    with (
        Client(cluster.url, ca=stranger_ca) as client,
        pytest.raises(MasterUnreachable, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.health()


def test_the_cli_takes_ca(cluster: LocalCluster, tls: TLSFiles, stranger_ca: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HERDER_CA"}
    trusted = _herder("types", "--url", cluster.url, "--ca", tls.ca, env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert "chatty" in trusted.stdout
    refused = _herder("types", "--url", cluster.url, "--ca", stranger_ca, env=env)
    assert refused.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    assert "Traceback" not in refused.stderr
    from_env = _herder("workers", "--url", cluster.url, env={**env, "HERDER_CA": tls.ca})
    assert from_env.returncode == 0 and "local-1" in from_env.stdout
    missing = _herder("types", "--url", cluster.url, "--ca", "nope.pem", env=env)
    assert missing.returncode == 1 and "'nope.pem' does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("trust", ["stranger", "system store"])
def test_a_worker_refuses_a_master_it_cannot_verify(
    cluster: LocalCluster, stranger_ca: str, tmp_path: Path, trust: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HERDER_CA"}
    ca = ["--ca", stranger_ca] if trust == "stranger" else []
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "herder", "worker", "--master", cluster.url, "--name",
             "doubter", *ca, *(a for t in TEST_TASKS for a in ("--tasks", t))],
            stdout=log, stderr=log, env=env,
        )
    try:
        refusal = "has a certificate this worker does not trust"
        # it says why, and keeps trying (the master may get another certificate)
        wait_until(lambda: log_path.read_text().count(refusal) >= 2, timeout=30,
                   what="two refusals logged")
        assert worker.poll() is None
        text = log_path.read_text()
        assert "--ca or HERDER_CA" in text and "Traceback" not in text
        assert [w["name"] for w in cluster.client.workers()] == ["local-1"]
    finally:
        worker.terminate()
        worker.wait(30)


def _start_master(tmp_path: Path, *tls_args: str) -> subprocess.CompletedProcess[str]:
    return _herder("master", "--port", str(free_port()), "--db", str(tmp_path / "h.db"),
                   *tls_args)


def test_a_key_that_is_not_the_certificates_stops_the_master(
    tls: TLSFiles, tmp_path: Path
) -> None:
    other = make_tls_files(tmp_path)
    out = _start_master(tmp_path, "--tls-cert", tls.cert, "--tls-key", other.key)
    assert out.returncode == 1
    assert "--tls-key" in out.stderr and "is not the key of the certificate" in out.stderr
    assert other.key in out.stderr and "Traceback" not in out.stderr


def test_a_missing_certificate_stops_the_master(tls: TLSFiles, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    out = _start_master(tmp_path, "--tls-cert", missing, "--tls-key", tls.key)
    assert out.returncode == 1
    assert f"--tls-cert: cannot read {missing!r}" in out.stderr and "Traceback" not in out.stderr
