"""Reloading the config while serving: access tables apply within a second; a bad file or a table that
needs a restart changes nothing else; removing every key never opens the gateway."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_gateway import Gateway
from mcp_gateway.config_files import load_config
from mcp_gateway.reload import watch_config
from tests.helpers import FIXTURES, eventually, key_client, serve_gateway, text_of

pytestmark = pytest.mark.anyio
ANN = "ann-key-0123456789abcdef"


def write(path: Path, *, ann_groups: list[str], keys: bool = True, extra: str = "") -> None:
    server = {"command": "${MCP_GATEWAY_PYTHON}", "args": [str(FIXTURES / "math_server.py")]}
    text = {"command": "${MCP_GATEWAY_PYTHON}", "args": [str(FIXTURES / "text_server.py")]}
    lines = [f'[gateway]\nstate_dir = "{path.parent / "state"}"\n',
             "[servers.math]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in server.items()),
             "[servers.text]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in text.items()),
             '[groups.math]\ntools = ["math.*"]\n[groups.text]\ntools = ["text.*"]\n']
    if keys:
        lines.append(f'[keys.ann]\nkey = "{ANN}"\ngroups = {json.dumps(ann_groups)}\n')
    path.write_text("".join(lines) + extra)


async def test_access_tables_apply_within_a_second_and_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    write(config, ann_groups=["math"])
    gw = Gateway(load_config(config))
    async with serve_gateway(gw) as url, anyio.create_task_group() as tg:
        tg.start_soon(watch_config, gw, config)
        async with key_client(url, ANN) as client:

            async def listing() -> str:
                return text_of(await client.call_tool("listToolFiles", {}))

            assert "text" not in await listing()
            write(config, ann_groups=["math", "text"])

            async def sees_text() -> bool:
                return "servers/text.pyi" in await listing()

            with anyio.fail_after(3):  # polled every second
                await eventually(sees_text, 3)
            config.write_text(config.read_text() + "\n[teams.broken]\ngroups = [\"nosuch\"]\n")
            await anyio.sleep(1.5)
            assert await sees_text(), "a file that does not load is not applied"
            write(config, ann_groups=["math"], extra="[limits]\ntimeout_s = 5\n")  # needs a restart

            async def lost_text() -> bool:
                return not await sees_text()

            await eventually(lost_text, 3)  # the access tables applied...
            assert gw.config.limits.timeout_s == 30, "...the limits left for a restart"
        write(config, ann_groups=["math"], keys=False)  # the last key removed from the config

        async def refused() -> bool:
            async with httpx.AsyncClient() as http:
                ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
                accept = {"Accept": "application/json, text/event-stream"}
                found = await http.post(url, json=ping, headers={**accept, "X-API-Key": ANN})
                keyless = await http.post(url, json=ping, headers=accept)
            return found.status_code == 401 and keyless.status_code == 401

        await eventually(refused, 3)
        tg.cancel_scope.cancel()
