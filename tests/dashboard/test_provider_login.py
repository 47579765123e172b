"""Admins sign in to the dashboard through the organisation's provider (oidc-provider on loopback), the browser
steps driven over HTTP: a member of a group mapped to admin gets a session and the pages; a member of no such
group is refused; an answer that this browser did not start (login CSRF) is refused; key sign-in still works."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from mcp_gateway import Gateway
from tests.helpers import free_port, make_config, serve_gateway, stdio
from tests.identity.idp import IdentityProvider, OAuthClient, Resource, sign_in

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def idp(port: int) -> Iterator[IdentityProvider]:
    with IdentityProvider({f"http://127.0.0.1:{port}/mcp": Resource()}) as provider:
        yield provider


@contextlib.asynccontextmanager
async def dashboard(idp: IdentityProvider, port: int) -> AsyncIterator[str]:
    async with dashboard_of(idp, port) as (ui, _):
        yield ui


@contextlib.asynccontextmanager
async def dashboard_of(idp: IdentityProvider, port: int) -> AsyncIterator[tuple[str, Gateway]]:
    base = f"http://127.0.0.1:{port}"
    client = idp.register_client(OAuthClient("", "asked", redirect_uris=(f"{base}/ui/signed-in",)))
    gw = Gateway(make_config(
        {"math": stdio("math_server")}, dashboard={"enabled": True}, groups={"math": {"tools": ["math.*"]}},
        sign_in={"issuer": idp.issuer, "resource": f"{base}/mcp", "client_id": client.client_id,
                 "client_secret": client.client_secret, "groups": {"admins": {"admin": True, "groups": ["math"]}}},
    ))
    async with gw, serve_gateway(gw, port):
        yield f"{base}/ui/", gw


async def browse_in(ui: str, browser: httpx2.AsyncClient, user: str) -> httpx2.Response:
    """From the sign-in page, through the provider's login, back to the dashboard."""
    page = await browser.get(ui + "login")
    assert page.status_code == 200 and 'href="provider"' in page.text
    to_provider = await browser.get(ui + "provider")
    assert to_provider.status_code == 303
    back = await sign_in(browser, to_provider.headers["location"], user)
    return await browser.get(back)


async def test_an_admin_of_the_provider_signs_in(idp: IdentityProvider, port: int) -> None:
    async with dashboard(idp, port) as ui, httpx2.AsyncClient() as browser:
        answer = await browse_in(ui, browser, "alice")  # in `admins` at the provider
        assert answer.status_code == 303 and answer.headers["location"] == "./"
        home = await browser.get(ui)
        assert home.status_code == 200 and "alice@example.com" in home.text
        assert (await browser.get(ui + "access")).status_code == 200
        assert "mgw_ui_login" not in browser.cookies  # the login's state is spent


async def test_a_member_of_no_admin_group_is_refused(idp: IdentityProvider, port: int) -> None:
    async with dashboard(idp, port) as ui, httpx2.AsyncClient() as browser:
        answer = await browse_in(ui, browser, "bob")  # only in `sales`
        assert answer.status_code == 403 and "makes an admin" in answer.text
        assert (await browser.get(ui)).status_code == 401


async def test_an_answer_this_browser_did_not_start_is_refused(idp: IdentityProvider, port: int) -> None:
    async with dashboard(idp, port) as ui:
        async with httpx2.AsyncClient() as attacker:  # the attacker starts a login and stops at the answer
            start = await attacker.get(ui + "provider")
            back = await sign_in(attacker, start.headers["location"], "alice")
        async with httpx2.AsyncClient() as victim:  # ...and makes the victim's browser open it
            answer = await victim.get(back)
            assert answer.status_code == 401 and "not started in this browser" in answer.text
            assert (await victim.get(ui)).status_code == 401


async def test_starting_a_login_writes_nothing(idp: IdentityProvider, port: int) -> None:
    """Anyone may start a login: its state waits in the browser's cookie, not in the store (a row per start
    grew the store without bound: 5,000 rows from 5,000 anonymous requests in 30 s)."""
    async with dashboard_of(idp, port) as (ui, gw), httpx2.AsyncClient() as anyone:
        db = sqlite3.connect(Path(gw.config.gateway.state_dir) / "gateway.db")
        before = db.execute("SELECT count(*) FROM state").fetchone()[0]
        for _ in range(50):
            assert (await anyone.get(ui + "provider")).status_code == 303
        assert db.execute("SELECT count(*) FROM state").fetchone()[0] == before
        db.close()
