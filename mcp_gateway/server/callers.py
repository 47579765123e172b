"""Who the caller behind a long-lived subscription is now.

A resource subscription outlives the request that made it, and the identity bound to that request
is a snapshot. Before an update is delivered, the caller is derived again, as a new request would
derive it: its key may have been revoked since (`KeyRing.still_valid`, which asks the store at most
once a second per key), or a reload may have removed the key, moved it out of a group, narrowed a
group's patterns or removed the group its endpoint (`/mcp/<group>`) names. Derivations are kept
until the config is reloaded; a stored key's groups are read from the store once per reload.
"""

from __future__ import annotations

from ..config import GatewayConfig
from ..gateway import Gateway
from ..governance.identity import OPEN, Identity, identity_for
from ..storage import StorageUnavailable, StoredKey

MAX_KEPT = 10_000
"""Derivations kept for one config; past it they are derived again."""


class Callers:
    """Derives the callers of one gateway as the current config and store describe them."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._config: GatewayConfig | None = None
        self._derived: dict[Identity, Identity | None] = {}
        self._rows: dict[str, StoredKey] | None = None

    async def now(self, identity: Identity) -> Identity | None:
        """`identity` as a request of its key would get it now; None when its key no longer lets it in.

        A store that cannot answer counts as None (fail closed: an update is not delivered rather than
        delivered to a key that may be revoked). A signed-in caller's groups came from its token's claims,
        which are not kept: its identity stays as it was when it subscribed.
        """
        keys = self.gw.keys
        if identity == OPEN:
            return identity if keys.is_open() else None
        try:
            if not await keys.still_valid(identity):
                return None
            if identity.subject is not None:
                return identity
            config = self.gw.config
            if config is not self._config:
                self._config, self._derived, self._rows = config, {}, None
            if identity not in self._derived:
                if len(self._derived) >= MAX_KEPT:
                    self._derived.clear()
                self._derived[identity] = await self._derive(config, identity)
            return self._derived[identity]
        except StorageUnavailable:
            return None

    async def _derive(self, config: GatewayConfig, identity: Identity) -> Identity | None:
        key = config.keys.get(identity.name)
        if key is not None:
            base = identity_for(config, identity.name, key.team, key.groups, key.remove_groups, key.deny, key.admin)
        else:
            row = await self._stored(identity.name)
            if row is None:
                return None  # a config key the reload removed, or a key no longer in the store
            base = identity_for(config, row.name, row.team, row.groups, admin=row.admin)
        if identity.group is None:
            return base
        group = config.groups.get(identity.group)
        return None if group is None else base.at_endpoint(identity.group, group.tools)

    async def _stored(self, name: str) -> StoredKey | None:
        """The stored key `name`, active; the store is read again for a name not seen (a key created since)."""
        if self._rows is None or name not in self._rows:
            self._rows = {r.name: r for r in await self.gw.storage.list_keys() if r.revoked is None}
        return self._rows.get(name)
