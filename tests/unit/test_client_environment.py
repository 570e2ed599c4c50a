"""The API and Prometheus clients resolve the proxy and CA-bundle variables once, as the environment says,
and never per request."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.kube.api import KubeApi
from modelrollout.metrics import QueryOutcome, QueryStatus


def _kubeconfig(tmp_path: Path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("no_proxy", "expected"),
    [("", "http://proxy.corp:3128"), ("kube.internal", None)],
)
async def test_the_proxy_is_resolved_once_and_the_session_does_not_read_the_environment_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_proxy: str, expected: str | None
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    api = await KubeApi.connect(_kubeconfig(tmp_path, "https://kube.internal:6443"))
    try:
        assert api.proxy == expected
        assert api.session.trust_env is False
    finally:
        await api.close()


PROXY_VARIABLES = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate it signed for 127.0.0.1, and a CA that signed nothing of ours."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    where = tmp_path_factory.mktemp("pki")

    def openssl(command: str) -> None:
        subprocess.run(["openssl", *command.split()], cwd=where, check=True, capture_output=True)

    for name in ("ca", "other-ca"):
        openssl(f"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-{name} -keyout {name}.key -out {name}.pem")
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr")
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.cnf -out server.pem"
    )
    return Pki(where / "ca.pem", where / "other-ca.pem", where / "server.pem", where / "server.key")


ANSWER = b'{"status":"success","data":{"resultType":"scalar","result":[1,"42"]}}'


@asynccontextmanager
async def fake_prometheus(tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[int, list[str]]]:
    """A server answering 42 to any request, also when asked as a proxy; yields its port and the
    request lines it saw."""
    lines: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines.append(head.split(b"\r\n")[0].decode())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(f"Content-Length: {len(ANSWER)}\r\nConnection: close\r\n\r\n".encode() + ANSWER)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1], lines
    finally:
        server.close()
        await server.wait_closed()


def trusted(tls: ssl.SSLContext | bool) -> list[str]:
    """The common names of the CAs a client's TLS context trusts."""
    assert isinstance(tls, ssl.SSLContext)
    return [value for ca in tls.get_ca_certs() for ((key, value),) in ca["subject"] if key == "commonName"]


async def test_the_prometheus_client_takes_proxy_and_ca_bundle_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    from modelrollout.metrics.prometheus import PrometheusBackend

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3129")  # no scheme: http:// is meant, as for requests
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    backend = PrometheusBackend()
    try:
        plain = backend._client("http://prometheus.monitoring:9090")
        secure = backend._client("https://prometheus.monitoring:9090")
        assert plain.proxy == "http://proxy.corp:3128"
        assert secure.proxy == "http://proxy.corp:3129"
        assert plain.tls is True  # a CA bundle is for https only
        assert isinstance(secure.tls, ssl.SSLContext)
        assert secure.tls.verify_mode is ssl.CERT_REQUIRED and secure.tls.check_hostname
        assert trusted(secure.tls) == ["test-ca"]
        assert plain.session_here().trust_env is False

        # Read once: the clients keep what they were made with.
        monkeypatch.setenv("NO_PROXY", "prometheus.monitoring")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.other_ca))
        assert backend._client("http://prometheus.monitoring:9090") is plain
        assert backend._client("https://prometheus.monitoring:9090") is secure
        assert plain.proxy == "http://proxy.corp:3128"
        assert trusted(secure.tls) == ["test-ca"]
    finally:
        await backend.aclose()
    fresh = PrometheusBackend()
    assert fresh._client("http://prometheus.monitoring:9090").proxy is None
    assert trusted(fresh._client("https://prometheus.monitoring:9090").tls) == ["test-other-ca"]


@pytest.mark.parametrize(
    ("address", "no_proxy", "proxied"),
    [
        ("http://prometheus.monitoring:9090", "", True),
        ("http://prometheus.monitoring:9090", "monitoring", False),  # requests: a plain suffix
        ("http://prometheus.monitoring:9090", "other.monitoring", True),
        ("http://prometheus.monitoring:9090", ".monitoring", False),
        ("http://prometheus.monitoring:9090", "other, prometheus.monitoring", False),
        ("http://prometheus.monitoring:9090", "prometheus.monitoring:9090", False),
        ("http://prometheus.monitoring:9090", "*", False),
        ("http://10.1.2.3:9090", "10.0.0.0/8", False),
        ("http://10.1.2.3:9090", "192.168.0.0/16", True),
        ("http://10.1.2.3:9090", "10.1.2.3", False),
    ],
)
def test_no_proxy_has_requests_meaning(
    monkeypatch: pytest.MonkeyPatch, address: str, no_proxy: str, proxied: bool
) -> None:
    from modelrollout.metrics.prometheus import PrometheusBackend

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    client = PrometheusBackend()._client(address)
    assert client.proxy == ("http://proxy.corp:3128" if proxied else None)


async def test_queries_go_through_the_proxy_and_the_environment_is_read_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import urllib.request

    from modelrollout.metrics.prometheus import PrometheusBackend

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    reads: list[int] = []
    real = urllib.request.getproxies

    def getproxies() -> dict[str, str]:
        reads.append(1)
        return real()

    monkeypatch.setattr(urllib.request, "getproxies", getproxies)
    async with fake_prometheus() as (port, lines):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        backend = PrometheusBackend()
        try:
            for _ in range(3):
                outcome = await backend.query_scalar("http://prometheus.invalid:9090", "up")
                assert outcome.value == 42.0, outcome.message
        finally:
            await backend.aclose()
        # Prometheus is given a second more than the backend waits (10 s), so that it is our timeout that ends a query.
        assert lines == ["GET http://prometheus.invalid:9090/api/v1/query?query=up&timeout=11 HTTP/1.1"] * 3
        assert len(reads) == 1
        monkeypatch.setenv("NO_PROXY", "prometheus.invalid")
        direct = PrometheusBackend()
        try:
            outcome = await direct.query_scalar("http://prometheus.invalid:9090", "up")
        finally:
            await direct.aclose()
        assert (
            outcome.message == "Prometheus at http://prometheus.invalid:9090 unreachable: cannot resolve the host name"
        )
        assert len(lines) == 3


async def test_tls_is_verified_against_the_ca_bundle_asked_for(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    from modelrollout.metrics.prometheus import PrometheusBackend

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.cert, pki.key)

    async def query(**options: Any) -> QueryOutcome:
        backend = PrometheusBackend(**options)
        try:
            return await backend.query_scalar(address, "up")
        finally:
            await backend.aclose()

    async with fake_prometheus(tls) as (port, _):
        address = f"https://127.0.0.1:{port}"
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.other_ca))
        untrusted = await query()
        explicit = await query(verify_tls=str(pki.ca))  # an explicit bundle wins over the environment's
        unverified = await query(verify_tls=False)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
        from_environment = await query()
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        monkeypatch.setenv("CURL_CA_BUNDLE", str(pki.ca))
        from_curl_variable = await query()
        monkeypatch.setenv("CURL_CA_BUNDLE", str(pki.ca.with_name("missing.pem")))
        missing = await query()

    assert untrusted.status is QueryStatus.ERROR
    assert untrusted.message.startswith(f"Prometheus at {address}: TLS error: [SSL: CERTIFICATE_VERIFY_FAILED]")
    for outcome in (explicit, unverified, from_environment, from_curl_variable):
        assert outcome == QueryOutcome(QueryStatus.VALUE, 42.0, "")
    assert missing.status is QueryStatus.ERROR
    assert missing.message.startswith(
        f"Prometheus at {address}: TLS error: cannot use the CA bundle {pki.ca.with_name('missing.pem')}: "
    )
