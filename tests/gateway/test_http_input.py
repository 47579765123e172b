"""Bad input on the HTTP endpoint: a clear error every time, never a traceback, a crash or a hang."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import FIXTURES, free_port

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
VERSION = "2025-11-25"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """`mcp-gateway serve` as its own process, and an HTTP client holding an initialized session."""
    tmp = tmp_path_factory.mktemp("http-input")
    port = free_port()
    cfg = tmp / "gw.toml"
    cfg.write_text(f'[gateway]\nanonymous = true\nport = {port}\nstate_dir = "{tmp / "state"}"\n'
                   f'[servers.math]\ncommand = "{sys.executable}"\nargs = ["{FIXTURES / "math_server.py"}"]\n')
    proc = subprocess.Popen([sys.executable, "-m", "mcp_gateway.cli", "serve", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            _wait_healthy(http)
            init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}}
            session = http.post("/mcp", json=init, headers=ACCEPT).headers["mcp-session-id"]
            http.headers.update({**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": VERSION})
            http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            yield http
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -9, "the gateway exited by itself during the test"


def _wait_healthy(http: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("gateway did not start")


def _error_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC error of a response, whether sent as JSON or as one server-sent event."""
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    error: dict[str, Any] = json.loads(text)["error"]
    return error


def _still_serves(http: httpx.Client) -> None:
    call = {"jsonrpc": "2.0", "id": 99, "method": "tools/call",
            "params": {"name": "executeToolCode", "arguments": {"code": "result = math.add(a=1, b=2)"}}}
    assert "result = 3" in http.post("/mcp", json=call).text


BAD_REQUESTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "not-json": ({"content": b"{not json"}, 400, "Parse error"),
    "not-json-rpc": ({"json": {"hello": "world"}}, 400, ""),
    "wrong-version": ({"json": {"jsonrpc": "1.0", "id": 1, "method": "tools/list"}}, 400, ""),
    "unknown-method": ({"json": {"jsonrpc": "2.0", "id": 1, "method": "tools/frobnicate"}}, 200, "Method not found"),
    "name-not-a-string": ({"json": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 7}}},
                          200, "Invalid"),
    "arguments-not-an-object": ({"json": {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                          "params": {"name": "executeToolCode", "arguments": [1]}}}, 200, "Invalid"),
    "oversized-body": ({"content": b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "'
                        + b"a" * (5 * 1024 * 1024) + b'"}}'}, 413, ""),
    "foreign-origin": ({"json": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                        "headers": {"Origin": "http://evil.example"}}, 403, ""),
    "foreign-host": ({"json": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                      "headers": {"Host": "evil.example"}}, 421, ""),
    "wrong-content-type": ({"content": b"{}", "headers": {"Content-Type": "text/plain"}}, 400, ""),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gets_a_clear_error(gateway: httpx.Client, name: str) -> None:
    kwargs, status, message = BAD_REQUESTS[name]
    response = gateway.post("/mcp", **kwargs)
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    if message:
        assert message in _error_of(response)["message"]
    _still_serves(gateway)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
METHODS = st.sampled_from(["tools/call", "tools/list", "resources/read", "prompts/get", "completion/complete",
                           "logging/setLevel", "resources/subscribe", "ping", "initialize"]) | st.text(max_size=12)
MESSAGES = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "id": st.integers(1, 10**6) | st.text(max_size=5), "method": METHODS},
    optional={"params": JSON | st.fixed_dictionaries({"name": st.sampled_from(
        ["executeToolCode", "readToolFile", "listToolFiles", "getToolDocs", "nope"]), "arguments": JSON})},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=MESSAGES | JSON)
def test_fuzzed_json_rpc_never_crashes_the_gateway(gateway: httpx.Client, body: Any) -> None:
    response = gateway.post("/mcp", json=body)
    assert response.status_code < 500, response.text[:300]
    assert "Traceback" not in response.text


def test_still_serving_after_the_fuzzing(gateway: httpx.Client) -> None:
    _still_serves(gateway)
