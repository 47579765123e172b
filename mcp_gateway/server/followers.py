"""Keeping each upstream subscribed to the resource URIs the gateway's clients subscribed to.

One task per upstream session (a companion of the `Upstream`, cancelled with its session) does it,
so a new session (the upstream restarted, or its connection was lost) is subscribed again from
nothing:

- A 2026-07-28 upstream has no `resources/subscribe`: one `subscriptions/listen` stream of it
  carries every URI wanted of it. A stream's URIs are fixed when it opens, so when they change a
  stream for the new set is opened, and the old one closed once the upstream acknowledged the new
  one: no update is lost in between (one may arrive twice). A stream that ends is opened again
  after the upstream's reconnect backoff while URIs remain; when the last URI goes it is closed.
- A handshake-era upstream gets `resources/subscribe` for each URI added and
  `resources/unsubscribe` for each URI removed; a URI it refused is asked for again after a backoff.

Upstreams that do not announce `resources.subscribe` are left alone (their updates never come).
A client's subscription waits (`covered`) until the upstream acknowledged its URIs, so a change
made after the client's request returned reaches it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

import anyio
import mcp_types as types
import structlog
from anyio.abc import TaskGroup, TaskStatus
from mcp.client import Client
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from ..errors import describe_exception
from ..gateway import Gateway
from ..resilience import Resilience

log = structlog.get_logger("mcp_gateway.followers")

Deliver = Callable[[str, str], Awaitable[None]]
"""Called with (upstream, URI) for each update the upstream sends."""


@dataclass(eq=False)
class _State:
    """One upstream's side of the subscriptions: what it acknowledged, what it refused, and who waits."""

    covered: frozenset[str] = frozenset()
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    """URI -> (the attempt that failed, why)."""
    attempts: int = 0
    wake: anyio.Event = field(default_factory=anyio.Event)
    """Set when the URIs wanted of the upstream change (or a stream ended): the follower looks again."""
    news: anyio.Event = field(default_factory=anyio.Event)
    """Set when `covered` or `refused` changed: waiting clients look again."""

    def record(self, covered: frozenset[str], refused: dict[str, str], wanted: frozenset[str]) -> None:
        self.attempts += 1
        self.covered = covered
        kept = {u: f for u, f in self.refused.items() if u in wanted and u not in covered}
        self.refused = kept | {u: (self.attempts, why) for u, why in refused.items()}
        self.news.set()
        self.news = anyio.Event()


@dataclass(eq=False)
class _Stream:
    uris: frozenset[str]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    ended: anyio.Event = field(default_factory=anyio.Event)
    opened: float = field(default_factory=time.monotonic)


class Followers:
    """The upstream side of resource subscriptions, for every upstream of one gateway."""

    def __init__(self, gw: Gateway, wanted: Callable[[str], frozenset[str]], deliver: Deliver) -> None:
        self.gw = gw
        self._wanted = wanted
        self._deliver = deliver
        self._states: dict[str, _State] = {}

    def _of(self, server: str) -> _State:
        return self._states.setdefault(server, _State())

    def changed(self, server: str) -> None:
        """The URIs wanted of `server` changed."""
        self._of(server).wake.set()

    async def covered(self, server: str, uris: Collection[str], timeout_s: float) -> str | None:
        """Wait until `server` acknowledged every URI of `uris`: None then, else why it did not (its refusal,
        or no answer within `timeout_s`). Only refusals from attempts after this call began count."""
        state = self._of(server)
        since = state.attempts
        with anyio.move_on_after(timeout_s):
            while True:
                news = state.news
                missing = [u for u in uris if u not in state.covered]
                if not missing:
                    return None
                refusals = [state.refused[u] for u in missing if u in state.refused and state.refused[u][0] > since]
                if refusals:
                    return refusals[0][1]
                await news.wait()
        return f"no acknowledgment within {timeout_s:g} s"

    async def follow(self, server: str, client: Client) -> None:
        """Run beside one session of `server` (cancelled when it ends); never raises."""
        resources = client.server_capabilities.resources
        if resources is None or not resources.subscribe:
            return
        state = self._of(server)
        try:
            if client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
                await self._subscribe(server, client, state)
            else:
                async with anyio.create_task_group() as tg:
                    await self._listen(server, client, state, tg)
        except Exception as exc:  # the session goes on without resource updates
            log.error("upstream resource subscriptions not followed", server=server, error=describe_exception(exc))
        finally:
            state.record(frozenset(), {}, frozenset())

    def _resilience(self, server: str) -> Resilience:
        return self.gw.upstream(server).resilience

    def _timeout(self, server: str) -> float:
        return self.gw.config.timeout_of(self.gw.upstream(server).config)

    # ---- handshake-era upstreams --------------------------------------------------------------

    async def _subscribe(self, server: str, client: Client, state: _State) -> None:
        done: set[str] = set()
        failures = 0
        while True:
            state.wake = anyio.Event()  # before reading what is wanted: a change from now on wakes the wait below
            wanted = self._wanted(server)
            refused: dict[str, str] = {}
            for uri in sorted(wanted - done):
                try:
                    await self._send(server, client, types.SubscribeRequest(
                        params=types.SubscribeRequestParams(uri=uri)))
                    done.add(uri)
                except Exception as exc:
                    refused[uri] = describe_exception(exc)
            for uri in sorted(done - wanted):
                done.discard(uri)
                try:
                    await self._send(server, client, types.UnsubscribeRequest(
                        params=types.UnsubscribeRequestParams(uri=uri)))
                except Exception as exc:  # its updates now reach no one anyway
                    log.info("upstream unsubscribe failed", server=server, uri=uri, error=describe_exception(exc))
            state.record(frozenset(done), refused, wanted)
            failures = failures + 1 if refused else 0
            with anyio.move_on_after(self._resilience(server).backoff(failures) if refused else math.inf):
                await state.wake.wait()

    async def _send(self, server: str, client: Client,
                    request: types.SubscribeRequest | types.UnsubscribeRequest) -> None:
        with anyio.fail_after(self._timeout(server)):
            await client.session.send_request(request, types.EmptyResult)

    # ---- 2026-07-28 upstreams -----------------------------------------------------------------

    async def _listen(self, server: str, client: Client, state: _State, tg: TaskGroup) -> None:
        current: _Stream | None = None
        failures = 0
        while True:
            state.wake = anyio.Event()
            wanted = self._wanted(server)
            if current is not None and current.ended.is_set():
                lasted = time.monotonic() - current.opened
                failures = 0 if lasted >= self._resilience(server).reconnect_max_s else failures + 1
                current = None
                state.record(frozenset(), {}, wanted)
                if wanted:
                    await anyio.sleep(self._resilience(server).backoff(failures))
                continue
            if not wanted:
                if current is not None:
                    current.scope.cancel()
                    current = None
                    state.record(frozenset(), {}, wanted)
            elif current is None or current.uris != wanted:
                try:
                    opened: _Stream = await tg.start(self._stream, server, client, wanted, state)
                except Exception as exc:
                    failures += 1
                    why = describe_exception(exc)
                    log.warning("upstream refused a resource listen", server=server, uris=len(wanted), error=why)
                    kept = current.uris if current is not None else frozenset()
                    state.record(kept, dict.fromkeys(wanted - kept, why), wanted)
                    await anyio.sleep(self._resilience(server).backoff(failures))
                    continue
                if current is not None:
                    current.scope.cancel()
                current = opened
                state.record(wanted, {}, wanted)
                continue  # the URIs may have changed while it opened
            await state.wake.wait()

    async def _stream(self, server: str, client: Client, uris: frozenset[str], state: _State, *,
                      task_status: TaskStatus[_Stream] = anyio.TASK_STATUS_IGNORED) -> None:
        """One listen stream: started once the upstream acknowledged it; raises only before that."""
        stream = _Stream(uris)
        started = False
        try:
            with stream.scope:
                async with contextlib.AsyncExitStack() as stack:
                    with anyio.fail_after(self._timeout(server)):
                        subscription = await stack.enter_async_context(
                            client.listen(resource_subscriptions=sorted(uris)))
                    task_status.started(stream)
                    started = True
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated):
                            await self._deliver(server, event.uri)
                log.info("upstream closed its resource listen", server=server)
        except Exception as exc:
            if not started:
                raise
            log.info("upstream resource listen lost", server=server, error=describe_exception(exc))
        finally:
            stream.ended.set()
            state.wake.set()
