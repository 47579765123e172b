"""Claude Code 2.1.330 signs in to a gateway with `[sign_in]` through the organisation's provider, offline.

The provider is `oidc-provider` on loopback (`tests/identity/idp.py`); the gateway is its protected resource, with
`scopes = ["mcp"]` and the provider's group `engineering` mapped to a tool group holding `math.add`. Claude Code
gets the gateway by `claude mcp add --transport http gw URL`, without a key, and logs in as it does for any MCP
server that answers 401 with `WWW-Authenticate: Bearer resource_metadata=...`:

- `claude mcp list` says `! Needs authentication` (`claude -p` lists the server as `needs-auth`, without its
  tools). The login starts with `claude mcp login gw`, or interactively `/mcp`, `gw`, *Authenticate*. `claude mcp
  login` needs a terminal (without one it exits 1: "this isn't an interactive terminal"): here it runs on a
  pseudo-terminal.
- It reads the protected-resource metadata and the provider's metadata, registers itself (RFC 7591, a public
  client: `client_name` "Claude Code (gw)", no secret), listens on `http://localhost:<port>/callback` (a random
  port in 49152-65535, reused with the registration at the next login; `MCP_OAUTH_CALLBACK_PORT` or
  `claude mcp add --callback-port` fix it) and opens the authorization URL with `$BROWSER`: code flow with PKCE
  (S256), `resource` = the gateway's URL (RFC 8707), `scope` = the gateway's `scopes_supported` plus
  `offline_access` (the provider offers it), `prompt=consent`.
- The browser's part is `sign_in` (the provider's login and consent pages over HTTP); its final redirect is
  requested as a browser would: Claude Code's listener answers "Authentication successful", exchanges the code,
  prints `Authenticated with "gw"` and exits 0. With `--no-browser` it prints the URL instead and takes the
  redirect URL pasted at its prompt. The tokens (access, refresh, expiry, scope, client id) are kept in
  `~/.claude/.credentials.json` (mode 0600) under `mcpOAuth`.
- Then `claude mcp list` says `✔ Connected`, and a `claude -p` run (the scripted model of
  `tests/interop/claude_code.py`) calls `math.add` through the gateway as the signed-in user: the audit row
  names `alice@example.com`. A token with 300 s or less to live is refreshed before it is sent.

With no `scopes` in `[sign_in]` the gateway publishes no `scopes_supported` and Claude Code asks for no `scope`;
oidc-provider then grants nothing and redirects with `access_denied` ("no scope was granted"): with such a
provider the gateway needs `scopes`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import stat
import struct
import termios
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from anyio.abc import Process
from starlette.types import Message, Receive, Scope, Send

from mcp_gateway import Gateway
from mcp_gateway.server import build_app
from tests.helpers import free_port, make_config, serve_asgi, stdio
from tests.identity.idp import CLIENTS, IdentityProvider, Resource, sign_in
from tests.interop.claude_code import Recorder, ScriptedClaude, claude_code_bin
from tests.interop.npm import unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

TOOL = "mcp__gw__math_add"
USER, EMAIL = "alice", "alice@example.com"  # an account of the test provider, in its group `engineering`
STEP_S = 90  # the longest any one step may take
BROWSER = """#!/bin/sh
printf '%s\\n' "$1" >> {log}
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def claude() -> Path:
    return claude_code_bin()


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def resource(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def idp(resource: str) -> Iterator[IdentityProvider]:
    with IdentityProvider({resource: Resource()}, access_token_ttl=600) as provider:
        yield provider


_ESCAPES = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


def _plain(screen: bytes) -> str:
    """A terminal's output without its control sequences (colours, cursor moves, hyperlinks)."""
    return _ESCAPES.sub("", screen.decode(errors="replace")).replace("\r", "")


class Terminal:
    """A command on a pseudo-terminal (`claude mcp login` refuses to run without one); all it wrote in `screen`."""

    def __init__(self) -> None:
        self.screen = bytearray()
        self.process: Process | None = None
        self._closed = anyio.Event()
        self._fd = -1

    @property
    def text(self) -> str:
        return _plain(bytes(self.screen))

    @contextlib.asynccontextmanager
    async def running(self, args: list[str], env: dict[str, str], cwd: Path) -> AsyncIterator[Terminal]:
        try:
            main, side = pty.openpty()
        except OSError as exc:
            unavailable(f"`claude mcp login` needs a terminal, and no pseudo-terminal can be opened here: {exc}")
        self._fd = main
        try:
            try:
                fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))  # 50 rows, 200 columns
                self.process = await anyio.open_process(args, stdin=side, stdout=side, stderr=side,
                                                        env={**env, "TERM": "xterm-256color"}, cwd=str(cwd),
                                                        start_new_session=True)
            finally:
                os.close(side)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read, main)
                try:
                    yield self
                finally:
                    with anyio.move_on_after(15, shield=True):
                        if self.process.returncode is None:
                            self.process.kill()
                        await self.process.wait()
                        await self._closed.wait()  # the reader sees the terminal close
                    tg.cancel_scope.cancel()
        finally:
            os.close(main)

    async def _read(self, fd: int) -> None:
        try:
            while chunk := await anyio.to_thread.run_sync(os.read, fd, 65536, abandon_on_cancel=True):
                self.screen.extend(chunk)
        except OSError:  # EIO: the command ended and the terminal closed
            pass
        finally:
            self._closed.set()

    async def type(self, keys: str) -> None:
        await anyio.to_thread.run_sync(os.write, self._fd, keys.encode())

    async def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        with anyio.move_on_after(timeout_s):
            return await self.process.wait()
        raise AssertionError(f"{timeout_s:g} s passed and it has not ended; its terminal shows:\n{self.text[-3000:]}")


class Statuses:
    """ASGI middleware keeping (method, path, status, whether a bearer token was sent) of every HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int, bool]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bearer = any(k.lower() == b"authorization" and v[:7].lower() == b"bearer " for k, v in scope["headers"])

        async def snd(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], message["status"], bearer))
            await send(message)

        await self.app(scope, receive, snd)


@dataclass
class Login:
    url: str  # where Claude Code sent the browser
    redirect: str  # where the provider sent it back
    screen: str  # what `claude mcp login` printed

    @property
    def asked(self) -> dict[str, str]:
        return _query(self.url)


class Setup:
    """The gateway with `[sign_in]` (its traffic recorded) on the provider's resource port, a scripted model, a
    fresh HOME whose `$BROWSER` writes each URL it is given to `browsed`."""

    def __init__(self, claude: Path, idp: IdentityProvider, resource: str, port: int, tmp: Path) -> None:
        self.claude, self.idp, self.resource, self.port = claude, idp, resource, port
        self.gw = Gateway(make_config(
            {"math": stdio("math_server", mode="direct")},
            gateway={"anonymous": False},
            groups={"adding": {"tools": ["math.add"]}},
            sign_in={"issuer": idp.issuer, "resource": resource, "scopes": ["mcp"],
                     "groups": {"engineering": {"groups": ["adding"]}}}))
        self.traffic = Recorder(build_app(self.gw))
        self.statuses = Statuses(self.traffic)
        self.model = ScriptedClaude(TOOL, {"a": 2, "b": 3}, "done")
        self.home, self.work = tmp / "home", tmp / "work"
        self.home.mkdir()
        self.work.mkdir()
        self.browsed = tmp / "browsed.log"
        self.browser = tmp / "browser.sh"
        self.browser.write_text(BROWSER.format(log=self.browsed))
        self.browser.chmod(0o755)
        self.env: dict[str, str] = {}

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Setup]:
        """The gateway and the model served; `gw` added to Claude Code, without a key."""
        async with serve_asgi(self.statuses, self.port), self.model.serving() as api:  # its lifespan starts gw
            self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), "ANTHROPIC_BASE_URL": api,
                        "ANTHROPIC_API_KEY": "fake", "ENABLE_TOOL_SEARCH": "false", "DISABLE_TELEMETRY": "1",
                        "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                        "BROWSER": str(self.browser)}
            added = await self.run(["mcp", "add", "--transport", "http", "gw", self.resource])
            assert "Added HTTP MCP server gw" in added, added
            yield self

    async def run(self, args: list[str]) -> str:
        """`claude *args` in the work directory (no terminal); its stdout (it must exit 0)."""
        with anyio.fail_after(STEP_S):
            done = await anyio.run_process([str(self.claude), *args], env=self.env, cwd=str(self.work), check=False)
        out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        assert done.returncode == 0, f"claude {args[:2]} exited {done.returncode}\n{out[-3000:]}\n{err[-3000:]}"
        return out

    async def print_mode(self) -> list[dict[str, Any]]:
        """`claude -p "add 2 and 3"` with Claude Code's own permission for the tool; its stream-json events."""
        out = await self.run(["-p", "add 2 and 3", "--allowedTools", TOOL, "--output-format", "stream-json",
                              "--verbose"])
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    async def login(self, user: str, *, paste: bool = False) -> Login:
        """`claude mcp login gw` on a terminal, and the browser's part done by `sign_in` as `user`: the provider's
        redirect requested (it lands on Claude Code's callback listener), or with `paste` (`--no-browser`) the
        redirect URL typed at Claude Code's prompt instead. It must exit 0."""
        terminal = Terminal()
        args = [str(self.claude), "mcp", "login", "gw", *(["--no-browser"] if paste else [])]
        async with terminal.running(args, self.env, self.work):
            url = await self._printed(terminal) if paste else await self._browsed(terminal)
            async with httpx2.AsyncClient() as browser:
                redirect = await sign_in(browser, url, user)
                assert redirect.startswith(_query(url)["redirect_uri"] + "?"), redirect
                assert "code" in _query(redirect), f"the provider refused the login: {redirect}"
                if paste:
                    await terminal.type(redirect + "\r")
                else:
                    with anyio.fail_after(STEP_S):
                        landed = await browser.get(redirect)  # Claude Code's callback listener
                    assert landed.status_code == 200 and "Authentication successful" in landed.text, \
                        f"its callback answered {landed.status_code}; its terminal shows:\n{terminal.text[-3000:]}"
            exited = await terminal.wait(STEP_S)
        assert exited == 0 and 'Authenticated with "gw"' in terminal.text, terminal.text[-3000:]
        return Login(url, redirect, terminal.text)

    async def _browsed(self, terminal: Terminal) -> str:
        """The URL Claude Code gave `$BROWSER` (waited for, bounded)."""
        with anyio.move_on_after(STEP_S):
            while not (self.browsed.exists() and self.browsed.read_text().strip()):
                assert terminal.process is not None
                if terminal.process.returncode is not None:
                    break
                await anyio.sleep(0.1)
        if not (self.browsed.exists() and self.browsed.read_text().strip()):
            raise AssertionError(f"Claude Code opened no browser; its terminal shows:\n{terminal.text[-3000:]}")
        [url] = self.browsed.read_text().split()
        return url

    async def _printed(self, terminal: Terminal) -> str:
        """The authorization URL Claude Code printed, once it asks for the redirect URL (waited for, bounded)."""
        with anyio.move_on_after(STEP_S):
            while "paste the redirect URL" not in terminal.text:
                assert terminal.process is not None
                if terminal.process.returncode is not None:
                    break
                await anyio.sleep(0.1)
        found = re.search(re.escape(self.idp.metadata["authorization_endpoint"]) + r"\?\S+", terminal.text)
        if "paste the redirect URL" not in terminal.text or found is None:
            raise AssertionError(f"Claude Code printed no URL to open; its terminal shows:\n{terminal.text[-3000:]}")
        return found.group(0)

    def credentials(self) -> dict[str, Any]:
        """Claude Code's stored OAuth login for `gw` (the tokens' values are not shown by a failing assert)."""
        path = self.home / ".claude" / ".credentials.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        logins = json.loads(path.read_text())["mcpOAuth"]
        [login] = [value for value in logins.values() if value.get("serverName") == "gw"]
        return dict(login)

    async def audit(self) -> list[tuple[str, str, str]]:
        return [(r.key, r.tool, r.outcome) for r in await self.gw.storage.query_audit() if r.kind == "tool"]


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    return content if isinstance(content, str) else "\n".join(str(p.get("text", "")) for p in content or [])


async def test_claude_code_signs_in_through_the_provider_and_calls_as_the_user(
    claude: Path, idp: IdentityProvider, resource: str, port: int, tmp_path: Path
) -> None:
    async with Setup(claude, idp, resource, port, tmp_path).serving() as s:
        before = await s.run(["mcp", "list"])
        refused = list(s.statuses.seen)
        login = await s.login(USER)
        signed_in = len(s.statuses.seen)
        after = await s.run(["mcp", "list"])
        events = await s.print_mode()
        audit = await s.audit()

    # before the login: the gateway refused Claude Code (no token), and it read the protected-resource metadata
    assert "gw: " in before and "Needs authentication" in before, before
    assert ("POST", "/mcp", 401, False) in refused, refused
    assert ("GET", "/.well-known/oauth-protected-resource/mcp", 200, False) in refused, refused

    # the login: the provider's authorization endpoint, a client Claude Code registered itself, PKCE, the
    # gateway as the resource, the gateway's scopes and a refresh token asked for, a loopback callback
    asked = login.asked
    assert login.url.startswith(idp.metadata["authorization_endpoint"] + "?"), login.url
    assert asked["response_type"] == "code" and asked["code_challenge_method"] == "S256" and asked["code_challenge"]
    assert asked["client_id"] not in {client.client_id for client in CLIENTS}  # registered by RFC 7591
    assert asked["resource"] == resource
    assert asked["scope"].split() == ["mcp", "offline_access"]
    callback = urlsplit(asked["redirect_uri"])
    assert (callback.scheme, callback.hostname, callback.path) == ("http", "localhost", "/callback")
    assert callback.port is not None and 49152 <= callback.port <= 65535
    assert _query(login.redirect)["code"] and _query(login.redirect)["state"] == asked["state"]

    # what it kept: a JWT for the gateway, a refresh token, the client it registered
    stored = s.credentials()
    assert stored["serverUrl"] == resource and stored["clientId"] == asked["client_id"]
    assert stored["issuer"] == idp.issuer and stored["scope"] == "mcp"
    assert stored["accessToken"].count(".") == 2, "the access token is not a JWT"
    assert stored.get("refreshToken"), "no refresh token was kept"

    # after it: connected, every request with the token, none refused
    assert "gw: " in after and "Connected" in after, after
    assert s.statuses.seen[signed_in:] and all(bearer and status != 401
                                               for _, _, status, bearer in s.statuses.seen[signed_in:]), \
        s.statuses.seen[signed_in:]

    # the call: the scripted model called the gateway's tool, which ran as the signed-in user
    [result] = s.model.tool_results()
    assert not result.get("is_error") and json.loads(_tool_result_text(result)) == {"result": 5}
    [end] = [e for e in events if e.get("type") == "result"]
    assert (end["subtype"], end["is_error"], end["result"]) == ("success", False, "done")
    calls = s.traffic.responses_to("tools/call")
    assert [(request["params"]["name"], reply["result"]["structuredContent"]) for request, reply in calls] == [
        ("math_add", {"result": 5})]
    assert audit == [(EMAIL, "add", "ok")]


async def test_without_a_browser_the_redirect_url_is_pasted(
    claude: Path, idp: IdentityProvider, resource: str, port: int, tmp_path: Path
) -> None:
    """`claude mcp login gw --no-browser` (over SSH): it prints the URL instead of starting a browser, the user
    signs in on another machine (where `localhost` is not Claude Code's) and pastes the URL the provider
    redirected to."""
    async with Setup(claude, idp, resource, port, tmp_path).serving() as s:
        login = await s.login(USER, paste=True)
        listed = await s.run(["mcp", "list"])
        events = await s.print_mode()
        audit = await s.audit()

    assert not s.browsed.exists()  # no browser was started
    assert "Visit this URL to authorize" in login.screen, login.screen
    assert login.asked["resource"] == resource and login.asked["scope"].split() == ["mcp", "offline_access"]
    assert "gw: " in listed and "Connected" in listed, listed
    [end] = [e for e in events if e.get("type") == "result"]
    assert (end["subtype"], end["result"]) == ("success", "done")
    assert audit == [(EMAIL, "add", "ok")]


async def test_a_short_lived_token_is_refreshed_without_a_new_login(
    claude: Path, resource: str, port: int, tmp_path: Path
) -> None:
    """Access tokens living 5 s: after the login the token expires; the next run refreshes it with the refresh
    token before using it (Claude Code refreshes a token with 300 s or less left), so the gateway never sees an
    expired token and the call runs as the user."""
    with IdentityProvider({resource: Resource()}, access_token_ttl=5) as short:
        async with Setup(claude, short, resource, port, tmp_path).serving() as s:
            await s.login(USER)
            first = s.credentials()
            signed_in = len(s.statuses.seen)
            await anyio.sleep(max(0.0, first["expiresAt"] / 1000 - time.time()) + 1)  # expired now
            events = await s.print_mode()
            audit = await s.audit()

    refreshed = s.credentials()
    assert refreshed["accessToken"] != first["accessToken"], "the token was not refreshed"
    assert refreshed["expiresAt"] > first["expiresAt"]
    assert all(bearer and status != 401 for _, _, status, bearer in s.statuses.seen[signed_in:]), \
        s.statuses.seen[signed_in:]
    [end] = [e for e in events if e.get("type") == "result"]
    assert (end["subtype"], end["result"]) == ("success", "done")
    assert audit == [(EMAIL, "add", "ok")]
