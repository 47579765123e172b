"""Prompts from every upstream the caller may use, and completions of prompt and resource-template arguments.

Prompt names are `<server>_<name>`, or unchanged for the direct-mode server when tool names pass
through; on a clash the first server in configuration order wins.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp import Client
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from ..gateway import Gateway
from ..governance.identity import Identity
from ..naming import prompt_name
from ..upstream import Upstream
from ..upstream_client import all_pages
from .changes import ListChanges
from .requests import ask, cached_or_fresh, gather, own_meta, serves, visible
from .resources import Resources


class Prompts:
    """The prompts side of one gateway: which client-facing name is which upstream's prompt."""

    def __init__(self, gw: Gateway, changes: ListChanges, resources: Resources) -> None:
        self.gw = gw
        self.changes = changes
        self.resources = resources
        self.listed: dict[str, dict[str, str]] = {}

    def name_of(self, server: str, name: str) -> str:
        cfg = self.gw.config
        up = self.gw.upstream(server)
        pass_through = not cfg.gateway.prefix_direct_tools and cfg.mode_of(up.config) == "direct"
        return prompt_name(server, name, pass_through=pass_through)

    async def all_prompts(self, identity: Identity) -> dict[str, tuple[str, types.Prompt]]:
        """Client-facing name to (server, upstream prompt)."""
        ups = [u for u in visible(self.gw, identity) if serves(u, "prompts")]
        listed: dict[str, tuple[str, types.Prompt]] = {}
        for server, prompts in await gather(self.gw, ups, _list_prompts):
            self.listed[server] = {self.name_of(server, p.name): p.name for p in prompts}
            for p in prompts:
                listed.setdefault(self.name_of(server, p.name), (server, p))
        return listed

    async def route(self, identity: Identity, name: str) -> tuple[Upstream, str]:
        """The upstream (the first in configuration order that lists the name) and its own prompt name."""
        def lookup() -> tuple[Upstream, str] | None:
            for up in visible(self.gw, identity):
                upstream_name = self.listed.get(up.name, {}).get(name)
                if upstream_name is not None:
                    return up, upstream_name
            return None

        found = await cached_or_fresh(lookup, lambda: self.all_prompts(identity))
        if found is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {name}")
        return found

    def forget(self, server: str) -> None:
        """The upstream's prompt list changed: its names are listed again on the next look-up."""
        self.listed.pop(server, None)

    # ---- handlers -----------------------------------------------------------------------------

    async def list_prompts(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams
    ) -> types.ListPromptsResult:
        self.changes.watch(ctx, self.gw.identity)
        listed = await self.all_prompts(self.gw.identity)
        return types.ListPromptsResult(
            prompts=[p.model_copy(update={"name": name}) for name, (_, p) in listed.items()])

    async def get_prompt(
        self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        identity = self.gw.identity
        up, name = await self.route(identity, params.name)
        args = params.arguments or {}
        async with self.gw.observer.observed(identity, "prompt", up.name, name, args, "client") as seen:
            result = await ask(self.gw, up, lambda c: c.get_prompt(name, args))
            seen.result(result)
        return own_meta(result)

    async def complete(
        self, ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        identity = self.gw.identity
        ref = params.ref
        up: Upstream | None = None
        if isinstance(ref, types.PromptReference):
            up, name = await self.route(identity, ref.name)
            ref = ref.model_copy(update={"name": name})
        else:
            templates = await self.resources.all_templates(identity)
            server = next((s for s, t in templates if t.uri_template == ref.uri), None)
            up = next((u for u in visible(self.gw, identity) if u.name == server), None)
        if up is None or not serves(up, "completions"):
            return types.CompleteResult(completion=types.Completion(values=[], total=0, has_more=False))
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context else None
        upstream_ref = ref
        result = await ask(self.gw, up, lambda c: c.complete(upstream_ref, argument, context))
        return own_meta(result)


async def _list_prompts(client: Client) -> list[types.Prompt]:
    return await all_pages(lambda cursor: client.list_prompts(cursor=cursor), lambda page: page.prompts)
