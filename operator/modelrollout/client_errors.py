"""What a person at the CLI is told when talking to the API server fails in an ordinary way.

Each failure a user can cause or meet (a kubeconfig that is missing or not one, no current context,
an API server that does not answer, a certificate that does not verify, credentials refused, a
permission missing) becomes one line saying what failed and what to check, and a documented exit
code (the table in ``docs/troubleshooting.md``), never a traceback.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import aiohttp
import yaml
from kubernetes_asyncio.config import ConfigException

from modelrollout.kube.api import ApiError

EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_API = 4
EXIT_UNREACHABLE = 5
#: The operator answered that the command does not apply now (`status.lastCommand.outcome: Ignored`),
#: or `undo` has nothing to go back to.
EXIT_IGNORED = 6
#: The command was sent, but the operator did not answer within --wait-seconds.
EXIT_NO_ANSWER = 7


@dataclass(frozen=True)
class ClientFailure:
    message: str
    exit_code: int


def explain(error: BaseException, kubeconfig: str | None) -> ClientFailure | None:
    """The line and exit code for an ordinary failure; None for a bug (which keeps its traceback)."""
    where = f"kubeconfig {kubeconfig}" if kubeconfig else "the kubeconfig ($KUBECONFIG or ~/.kube/config)"
    if isinstance(error, FileNotFoundError):
        return ClientFailure(f"{where}: no such file ({error.filename})", EXIT_USAGE)
    if isinstance(error, yaml.YAMLError):
        first = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        return ClientFailure(f"{where} is not a kubeconfig: not valid YAML ({first})", EXIT_USAGE)
    if isinstance(error, ConfigException):
        text = str(error)
        if "context" in text.lower():
            hint = "set one with `kubectl config use-context NAME` or pass --context NAME"
        else:
            hint = "check it with `kubectl config view`"
        return ClientFailure(f"{where} cannot be used: {text}; {hint}", EXIT_USAGE)
    if isinstance(error, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError)):
        return ClientFailure(
            f"TLS with the API server failed: {_reason(error)}; check the cluster's certificate-authority "
            f"(or certificate-authority-data) in {where}",
            EXIT_UNREACHABLE,
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        return ClientFailure(
            f"cannot reach the API server at {error.host}:{error.port} ({_reason(error)}); check that it is "
            f"running and that the server address in {where} is right",
            EXIT_UNREACHABLE,
        )
    if isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError)):
        return ClientFailure(
            f"the API server did not answer ({_reason(error)}); check that it is running and reachable",
            EXIT_UNREACHABLE,
        )
    if isinstance(error, ApiError):
        if error.status == 401:
            return ClientFailure(
                f"the API server refused the credentials (401 Unauthorized): check the user's token or client "
                f"certificate in {where}, and that it has not expired",
                EXIT_API,
            )
        if error.status == 403:
            return ClientFailure(f"not allowed (403 Forbidden): {error.message}", EXIT_API)
        if error.status == 404:
            return ClientFailure(error.message, EXIT_NOT_FOUND)
        return ClientFailure(f"the API server answered {error.status} {error.reason}: {error.message}", EXIT_API)
    return None


def _reason(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return str(error.os_error.strerror or error.os_error) if error.os_error else str(error)
    return str(error) or error.__class__.__name__
