"""The operator's API client: every request has a timeout, so a hung connection fails a pass (which
the worker retries) instead of hanging it for ever."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from modelrollout.kube.api import DEPLOYMENTS, ApiError, ApiTimeout, KubeApi, WriteFenced, load_configuration


def kubeconfig(tmp_path: Path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "secret-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


DEPLOYMENT = b'{"kind": "Deployment", "metadata": {"name": "fraud-scorer"}}'


@asynccontextmanager
async def answering(heads: list[bytes], status_for: Callable[[bytes], int] = lambda _: 200) -> AsyncIterator[str]:
    """A server that keeps each request's head and answers it, a Deployment or an error, then hangs
    up; yields its URL."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        status = status_for(head)
        body = DEPLOYMENT if status == 200 else b'{"reason": "x", "message": "y"}'
        writer.write(
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'No'}\r\nContent-Type: application/json\r\n".encode()
        )
        writer.write(f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_is_a_timeout_not_a_hang(tmp_path: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing, keep the connection open

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = KubeApi(await load_configuration(kubeconfig(tmp_path, f"http://127.0.0.1:{port}")), timeout=0.3)
    started = time.monotonic()
    try:
        try:
            await api.get(DEPLOYMENTS, "ml", "fraud-scorer")
        except ApiTimeout as error:
            assert error.message == (
                "GET /apis/apps/v1/namespaces/ml/deployments/fraud-scorer: no answer in 0.3 s"
                " (waiting for a free connection or for the API server)"
            )
        else:
            raise AssertionError("no timeout")
    finally:
        await api.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    assert time.monotonic() - started < 3.0, "a timeout is not retried"
    assert len(accepted) == 1


async def test_requests_carry_the_kubeconfig_token(tmp_path: Path) -> None:
    heads: list[bytes] = []
    async with answering(heads) as url:
        api = await KubeApi.connect(kubeconfig(tmp_path, url))
        try:
            found = await api.get(DEPLOYMENTS, "ml", "fraud-scorer")
        finally:
            await api.close()
    assert found == {"kind": "Deployment", "metadata": {"name": "fraud-scorer"}}
    assert b"GET /apis/apps/v1/namespaces/ml/deployments/fraud-scorer HTTP/1.1" in heads[0]
    assert b"\r\nAuthorization: Bearer secret-token\r\n" in heads[0].replace(b"authorization", b"Authorization")


async def test_kopf_logs_in_with_the_connection_the_operator_client_uses(tmp_path: Path) -> None:
    from modelrollout.handlers import login
    from modelrollout.settings import OperatorOptions

    memo = SimpleNamespace(options=OperatorOptions(kubeconfig=kubeconfig(tmp_path, "https://kube.internal:6443")))
    info = await login(memo=memo)  # type: ignore[arg-type]
    assert (info.server, info.scheme, info.token) == ("https://kube.internal:6443", "Bearer", "secret-token")
    assert info.insecure is False


async def test_a_login_without_any_connection_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kopf
    from kubernetes_asyncio.config import kube_config

    from modelrollout.handlers import login
    from modelrollout.settings import OperatorOptions

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # The loader reads $KUBECONFIG once, when it is imported: its default is set for this test alone.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "missing"))
    with pytest.raises(kopf.LoginError, match="cannot log in, neither in-cluster nor with a kubeconfig"):
        await login(memo=SimpleNamespace(options=OperatorOptions()))  # type: ignore[arg-type]


async def test_every_answer_but_a_list_is_reported_with_whether_it_said_overloaded(tmp_path: Path) -> None:
    """The pass limit (modelrollout.runtime.pacing) follows these reports."""
    statuses = {b"/fraud-scorer ": 200, b"/busy ": 429, b"/wrong ": 422, b"/deployments ": 200}

    def status_for(head: bytes) -> int:
        line = head.split(b"\r\n", 1)[0]
        return next(code for ending, code in statuses.items() if ending + b"HTTP" in line)

    reports: list[tuple[float, bool, float]] = []
    async with answering([], status_for) as url:
        api = KubeApi(await load_configuration(kubeconfig(tmp_path, url)), attempts=1)
        api.on_answer = lambda seconds, overloaded, now: reports.append((seconds, overloaded, now))
        try:
            await api.get(DEPLOYMENTS, "ml", "fraud-scorer")
            for name in ("busy", "wrong"):
                with pytest.raises(ApiError):
                    await api.get(DEPLOYMENTS, "ml", name)
            await api.list(DEPLOYMENTS, "ml")
        finally:
            await api.close()
    assert [overloaded for _, overloaded, _ in reports] == [False, True, False]
    assert all(seconds >= 0 for seconds, _, _ in reports)
    assert [now for _, _, now in reports] == sorted(now for _, _, now in reports)


async def test_a_write_is_not_sent_once_the_owner_may_no_longer_act(tmp_path: Path) -> None:
    """A sharded replica's pass can outlast its hold on the shard: its later writes stay here."""
    heads: list[bytes] = []
    holding = [True]
    async with answering(heads) as url:
        api = KubeApi(await load_configuration(kubeconfig(tmp_path, url)))
        api.may_write = lambda: holding[0]
        try:
            await api.merge_patch(DEPLOYMENTS, "ml", "fraud-scorer", {"spec": {"replicas": 2}})
            holding[0] = False
            with pytest.raises(WriteFenced, match=r"PATCH .*/fraud-scorer: not sent, this replica may no longer hold"):
                await api.merge_patch(DEPLOYMENTS, "ml", "fraud-scorer", {"spec": {"replicas": 3}})
            assert await api.get(DEPLOYMENTS, "ml", "fraud-scorer") is not None  # reads still go
        finally:
            await api.close()
    assert [head.split(b" ", 1)[0] for head in heads] == [b"PATCH", b"GET"]
