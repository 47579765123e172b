"""The gateway: its upstreams, the catalog as each caller sees it, the sandbox, and the governance parts.

Constructing a `Gateway` only stores what it is given and builds plain objects; `start` (or
`async with`) configures logging if the host has not, connects the upstreams and starts the
sandbox's workers. Every tool call goes through `calls.call_tool`.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, Self

import anyio
import structlog
from anyio.abc import TaskGroup

from sandbox import Sandbox

from .catalog import Catalog, build_catalog, restrict
from .config import GatewayConfig, SignInSettings
from .governance.audit import Auditor
from .governance.identity import NOBODY, OPEN, Identity, current_identity
from .governance.keys import KeyRing
from .governance.quotas import Quota
from .logs import configure_logging
from .metrics import Metrics
from .naming import client_prefix
from .oauth.auth import UpstreamAuth
from .oauth.grants import SHARED, open_grants
from .observe import Observer
from .resilience import Resilience
from .savings import SavingsLedger
from .storage import Storage, StorageUnavailable, open_storage
from .tokens import definition_tokens, load_encoding
from .upstream import Upstream
from .upstream_history import UpstreamHistory
from .upstream_personal import PersonalSessions
from .validation import Validators

log = structlog.get_logger("mcp_gateway")

CHANGE_DEBOUNCE_S = 0.05
"""Catalog changes within this time are announced once (an upstream reconnecting changes it twice)."""

CatalogListener = Callable[[], Awaitable[None]]


class Gateway:
    """Use as `async with Gateway(config) as gw:`; everything else reads `gw.catalog`."""

    def __init__(self, config: GatewayConfig, *, storage: Storage | None = None) -> None:
        self.config = config
        resilience = Resilience.of(config.gateway)
        self.upstreams = [Upstream(name, cfg, resilience, on_change=self._upstream_changed)
                          for name, cfg in config.servers.items()]
        self.sandbox = Sandbox(config.limits.sandbox_limits(), workers=config.limits.workers,
                               pool=config.limits.pool_limits())
        self.storage: Storage = storage if storage is not None else open_storage(config)
        self.replica = config.storage.replica or f"{socket.gethostname()}:{config.gateway.port}"
        self.keys = KeyRing(config, self.storage)
        self.grants = open_grants(config, self.storage, os.environ)
        """The gateway's own OAuth logins to upstreams (None when no `[servers.<name>.oauth]`)."""
        self.upstream_history = UpstreamHistory(self.storage, self.replica)
        """Each upstream's state changes, for the dashboard (written to the store in batches)."""
        for up in self.upstreams:
            up.on_event = self.upstream_history.book
            if up.config.oauth is not None and self.grants is not None:
                up.auth = functools.partial(UpstreamAuth, self.grants, up.name, SHARED)
                if up.config.oauth.identity == "per_user":
                    up.personal = PersonalSessions(up.name, up.config, up.client_options,
                                                   functools.partial(UpstreamAuth, self.grants, up.name))
        self.metrics = Metrics()
        self.observer = Observer(self.metrics, Auditor(self.storage, config.gateway, replica=self.replica))
        self.quota = Quota(config, self.storage)
        self.token_savings = SavingsLedger(self.storage)
        self.validators = Validators()
        self.catalog_listeners: list[CatalogListener] = []
        self.calls_in_flight = 0
        self._views: dict[Identity, Catalog] = {}
        self._savings: dict[int, int] = {}
        self._catalog: Catalog | None = None
        self._catalog_key: tuple[Any, ...] = ()
        self._changed = anyio.Event()
        self._stack = AsyncExitStack()
        self._tg: TaskGroup | None = None
        self._users = 0

    async def __aenter__(self) -> Self:
        """Start on the first entry; nested entries (an app's lifespan inside yours) share the running gateway."""
        self._users += 1
        if self._users == 1:
            try:
                await self.start()
            except BaseException:
                self._users = 0
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._users -= 1
        if self._users == 0:
            await self.aclose()

    async def start(self) -> None:
        """Start every upstream concurrently; wait (bounded) for their first attempt to settle."""
        if not structlog.is_configured():
            configure_logging()  # embedded use: our log lines go to stderr, never into a host's stdout
        await self._open_store()
        self._stack.push_async_callback(self.token_savings.flush)  # last: after the tasks that book savings
        self._stack.push_async_callback(self.upstream_history.flush)  # after the upstreams stopped
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.push_async_callback(self._stop_upstreams)
        self._tg.start_soon(self._announce_changes, name="catalog changes")
        self._tg.start_soon(self._prune_audit, name="audit retention")
        self._tg.start_soon(self.token_savings.run, name="token savings")
        self._tg.start_soon(self.upstream_history.run, name="upstream history")
        for up in self.upstreams:
            self._tg.start_soon(up.run, name=f"upstream:{up.name}")
            if up.personal is not None:
                self._tg.start_soon(up.personal.run, name=f"personal sessions:{up.name}")
        await self._stack.enter_async_context(self.sandbox)
        with anyio.move_on_after(self.config.gateway.startup_timeout_s):
            async with anyio.create_task_group() as tg:
                tg.start_soon(load_encoding)  # the savings count of code mode's tools/list needs it
                for up in self.upstreams:
                    tg.start_soon(up.wait_settled)
        pending = [u.name for u in self.upstreams if u.state == "connecting"]
        if pending:
            log.warning("upstreams still connecting", servers=pending)

    async def aclose(self) -> None:
        try:
            await self._stack.aclose()
        finally:
            if self.keys.sign_in is not None:
                await self.keys.sign_in.aclose()
            if self.grants is not None:
                await self.grants.http.aclose()
            await self.storage.close()

    async def _open_store(self) -> None:
        """Migrate the store and learn whether keys exist; a store that is down is logged, not fatal:
        until it answers nobody is let in and no call is made (each request tries it again)."""
        try:
            applied = await self.storage.migrate()
            if applied:
                log.info("store schema migrated", store=self.storage.name, applied=applied)
            await self.keys.refresh()
        except StorageUnavailable as exc:
            log.error("store unavailable: refusing every caller until it answers", error=str(exc))

    async def _stop_upstreams(self) -> None:
        """Close sessions in parallel; cancel whatever is still connecting after the grace period."""
        async with anyio.create_task_group() as tg:
            for up in self.upstreams:
                tg.start_soon(up.stop)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    @property
    def full_catalog(self) -> Catalog:
        """Every tool, rebuilt only when an upstream's state or tool list changed."""
        key = tuple((u.state, u.since, id(u.tools)) for u in self.upstreams)
        if self._catalog is None or key != self._catalog_key:
            self._catalog = build_catalog(self.config, self.upstreams)
            self._catalog_key = key
            self.validators.clear()
            self._views.clear()
            self._savings.clear()
        return self._catalog

    @property
    def identity(self) -> Identity:
        """The caller of the request being served (bound where the request entered, see `acting_as`)."""
        return current_identity(OPEN if self.keys.is_open() else NOBODY)

    @property
    def catalog(self) -> Catalog:
        """The catalog as the current caller sees it: every listing, stub and lookup reads this."""
        full = self.full_catalog
        identity = self.identity
        if identity.allow == ("*",) and not identity.deny and identity.endpoint is None:
            return full
        view = self._views.get(identity)
        if view is None:
            view = self._views[identity] = restrict(full, identity, self.config.gateway.layout)
        return view

    async def classic_tokens(self) -> int:
        """Tokens of the code-mode tools the caller would be sent in classic mode (for the savings metric),
        counted once per view of the catalog, in a worker thread."""
        catalog = self.catalog
        count = self._savings.get(id(catalog))
        if count is None:
            code_tools = [e.tool for e in catalog.entries if e.direct_name is None]
            count = await definition_tokens(code_tools, client_prefix(self.config.gateway.name))
            if self.catalog is catalog:  # not changed meanwhile (an id is only unique while its catalog lives)
                self._savings[id(catalog)] = count
        return count

    def apply_governance(self, new: GatewayConfig) -> list[str]:
        """Take `new`'s groups, teams, keys and tool rules (who may call what, limits, prices, approvals)
        and how signed-in users are mapped at once; returns the other tables (or parts) that differ, which
        need a restart and were left as they are."""
        sign_in, provider_changed = _sign_in_after_reload(self.config.sign_in, new.sign_in)
        left = [t for t in GatewayConfig.model_fields
                if t not in _RELOADED and getattr(new, t) != getattr(self.config, t)] + provider_changed
        self.config = self.config.model_copy(update={
            "groups": new.groups, "teams": new.teams, "keys": new.keys, "tools": new.tools, "sign_in": sign_in})
        if self.keys.sign_in is not None and sign_in is not None:
            self.keys.sign_in.settings = sign_in
        self.keys.use(self.config)
        self.quota.config = self.config
        self._views.clear()
        self._savings.clear()
        self._changed.set()  # sessions whose tools changed are told
        return left

    def _upstream_changed(self, up: Upstream) -> None:
        """An upstream's tools appeared, changed or went away (called from its task)."""
        self._changed.set()

    async def _announce_changes(self) -> None:
        """Tell the catalog listeners once per burst of changes."""
        while True:
            await self._changed.wait()
            await anyio.sleep(CHANGE_DEBOUNCE_S)
            self._changed = anyio.Event()
            for listener in list(self.catalog_listeners):
                try:
                    await listener()
                except Exception as exc:  # one listener's failure must not stop the others, or the gateway
                    log.error("catalog change not announced", error=str(exc))

    async def _prune_audit(self) -> None:
        """Apply `audit_retention_days` now and once a day."""
        while True:
            try:
                pruned = await self.observer.auditor.prune()
                if pruned:
                    log.info("audit rows pruned", rows=pruned, days=self.config.gateway.audit_retention_days)
            except Exception as exc:
                log.error("audit pruning failed", error=str(exc))
            await anyio.sleep(86400)

    async def wait_idle(self) -> None:
        """Return once no client `tools/call` is being served (graceful shutdown waits on this)."""
        while self.calls_in_flight:
            await anyio.sleep(0.05)

    def upstream(self, name: str) -> Upstream:
        return next(u for u in self.upstreams if u.name == name)


_RELOADED = ("groups", "teams", "keys", "tools", "sign_in")
"""The config tables a reload applies (of `sign_in`, all but `_PROVIDER`)."""
_PROVIDER = ("issuer", "resource", "audience", "tokens", "client_id", "client_secret", "algorithms")
"""What of `[sign_in]` connects the gateway to the provider: read at start only."""


def _sign_in_after_reload(old: SignInSettings | None,
                          new: SignInSettings | None) -> tuple[SignInSettings | None, list[str]]:
    """The `[sign_in]` to serve with after a reload, and what of it needs a restart.

    Who signed-in users are (claims, groups, scopes, quotas) applies at once, as keys' groups do; the
    provider's connection keeps what the gateway started with. A table taken out switches signing in off
    at once (its tokens are refused); one put in needs a restart.
    """
    if old is None or new is None:
        return None, ["sign_in"] if old is None and new is not None else []
    kept = {name: getattr(old, name) for name in _PROVIDER}
    return new.model_copy(update=kept), [f"sign_in.{name}" for name in _PROVIDER if getattr(new, name) != kept[name]]
