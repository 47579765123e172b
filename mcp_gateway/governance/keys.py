"""API keys: from the config (`[keys.<name>]`) and from storage (`mcp-gateway keys create`), hashed."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import structlog

from ..config import GatewayConfig, KeyConfig
from ..oauth import SignIn
from ..storage import Storage, StorageUnavailable, StoredKey
from .identity import Identity, identity_for

log = structlog.get_logger("mcp_gateway.keys")


RECHECK_S = 1.0
"""How long a stored key the store just confirmed counts as not revoked (a request's calls, a script's)."""


def hash_key(secret: str) -> str:
    """Keys are random 256-bit tokens, so one SHA-256 is enough (no password stretching needed)."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


KEY_PREFIX = "mgw_"
"""Every key `mcp-gateway keys create` makes starts with it (and holds no dot, unlike a JWT)."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def matches(stored_hash: str, secret_hash: str) -> bool:
    """Constant-time comparison of two key hashes."""
    return hmac.compare_digest(stored_hash.encode(), secret_hash.encode())


def config_key_hash(key: KeyConfig) -> str:
    return key.hash if key.hash is not None else hash_key(key.key or "")


class KeyRing:
    """Turns a presented secret into an `Identity`; revocations in storage apply to the next request.

    Fails closed: the gateway is open (every caller allowed) only while no key has ever existed, in
    the config or in storage (revoked keys count), and never with `[sign_in]`. Once a key is seen it
    stays closed for the life of this object, whatever happens to the store. `refresh` asks the store
    (each request does, where it enters); `is_open` answers from the last answer, and is false until the first one and
    whenever the store could not give one. A store that cannot be read authenticates no one: both
    raise `StorageUnavailable`, and the caller refuses.
    """

    def __init__(self, config: GatewayConfig, storage: Storage) -> None:
        self.storage = storage
        self.sign_in = SignIn(config.sign_in) if config.sign_in is not None else None
        """Checks the tokens of callers who sign in with the organisation's provider (`[sign_in]`)."""
        self._closed = False
        self.use(config)
        self._open = False
        self._confirmed: dict[str, float] = {}

    def use(self, config: GatewayConfig) -> None:
        """Take a (re)loaded config's keys, teams and groups; a key ring once closed stays closed."""
        self.config = config
        self._config_keys = [
            (config_key_hash(k), identity_for(config, n, k.team, k.groups, k.remove_groups, k.deny, k.admin))
            for n, k in config.keys.items()
        ]
        self._closed = self._closed or bool(self._config_keys) or config.sign_in is not None

    def is_open(self) -> bool:
        """No key was ever configured or created (as of the last `refresh`): loopback callers are let in."""
        return self._open and not self._closed

    async def refresh(self) -> bool:
        """Ask the store whether a key exists yet (until one is seen); returns `is_open()`.

        Raises `StorageUnavailable` when the store cannot say (`is_open()` is then false)."""
        if not self._closed:
            try:
                self._closed = await self.storage.has_keys()
            except StorageUnavailable:
                self._open = False
                raise
            self._open = not self._closed
        return self.is_open()

    async def authenticate(self, secret: str) -> Identity | None:
        """The identity of `secret`; raises `StorageUnavailable` when the store cannot say."""
        presented = hash_key(secret)
        found: Identity | None = None
        for stored, identity in self._config_keys:  # every entry is compared: no early exit to time
            if matches(stored, presented):
                found = identity
        if found is not None:
            return found
        row = await self.storage.find_key(presented)
        if row is None or not matches(row.hash, presented):
            return None
        self._closed = True
        self._confirm(row.name)
        return identity_for(self.config, row.name, row.team, row.groups, admin=row.admin)

    async def still_valid(self, identity: Identity) -> bool:
        """Whether `identity`'s key is not revoked (raises `StorageUnavailable` when the store cannot say).

        A key the store confirmed less than `RECHECK_S` ago is not asked about again, so a revocation
        stops a running script's calls within that time, on every replica."""
        if identity.name in self.config.keys or not self._closed or identity.subject is not None:
            return True  # config keys are revoked by changing the config; open mode has no keys; a token
            # was checked where its request entered (and expires)
        if time.monotonic() - self._confirmed.get(identity.name, -RECHECK_S) < RECHECK_S:
            return True
        if await self.storage.is_revoked(identity.name):
            return False
        self._confirm(identity.name)
        return True

    def _confirm(self, name: str) -> None:
        if len(self._confirmed) >= 10_000:
            self._confirmed.clear()
        self._confirmed[name] = time.monotonic()

    async def create(self, name: str, team: str | None, groups: list[str], admin: bool = False) -> str:
        """Store a new key's hash; the secret is returned once and never stored."""
        if name in self.config.keys:
            raise ValueError(f"a key named {name!r} already exists (in the config)")
        taken = next((k for k in await self.storage.list_keys() if k.name == name), None)
        if taken is not None:
            revoked = f", revoked {time.strftime('%Y-%m-%d %H:%M', time.gmtime(taken.revoked))} UTC" \
                if taken.revoked else ""
            raise ValueError(f"a key named {name!r} already exists{revoked}: a name is never reused, choose another")
        if team is not None and team not in self.config.teams:
            raise ValueError(f"unknown team {team!r}; teams in the config: {', '.join(self.config.teams) or 'none'}")
        unknown = [g for g in groups if g not in self.config.groups]
        if unknown:
            raise ValueError(f"unknown groups {', '.join(unknown)}; groups in the config: "
                             f"{', '.join(self.config.groups) or 'none'}")
        secret = new_key()
        await self.storage.add_key(StoredKey(name, hash_key(secret), team, tuple(groups), time.time(), admin=admin))
        return secret
