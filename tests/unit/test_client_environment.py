"""The API client resolves the proxy variables once, as the environment says, and never per request."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelrollout.kube.api import KubeApi


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
        rest = api._client.rest_client
        assert rest.proxy == expected
        assert rest.pool_manager.trust_env is False
    finally:
        await api.close()


def test_the_prometheus_session_takes_proxy_and_ca_bundle_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelrollout.metrics.prometheus import PrometheusBackend

    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp-ca.pem")
    backend = PrometheusBackend()
    _, session = backend._client("http://prometheus.monitoring:9090")
    assert session.trust_env is False
    assert session.proxies.get("http") == "http://proxy.corp:3128"
    assert session.verify == "/etc/ssl/corp-ca.pem"
    monkeypatch.setenv("NO_PROXY", "prometheus.monitoring")
    _, direct = PrometheusBackend()._client("http://prometheus.monitoring:9090")
    assert not direct.proxies.get("http")
