"""`check` is listed the tools `serve` is: its sessions declare sampling and elicitation as `serve`'s do."""

from __future__ import annotations

import pytest

from mcp_gateway import Gateway
from mcp_gateway.cli import check
from tests.helpers import key_client, make_config, serve_gateway, stdio

pytestmark = pytest.mark.anyio


async def test_check_counts_the_tools_serve_lists(capfd: pytest.CaptureFixture[str]) -> None:
    cfg = make_config({"cap": stdio("capable_server", mode="direct")}, gateway={"prefix_direct_tools": False})
    assert await check(cfg) == 0
    row = next(line.split() for line in capfd.readouterr().out.splitlines() if line.startswith("cap "))
    async with serve_gateway(Gateway(cfg)) as url, key_client(url) as client:
        served = {t.name for t in (await client.list_tools()).tools}
    assert served == {"plain", "ask_model", "ask_user"}  # listed only to clients declaring sampling, elicitation
    assert row[3] == "ok" and int(row[4]) == len(served)
