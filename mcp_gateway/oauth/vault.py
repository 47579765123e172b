"""Encryption at rest for what the gateway holds at upstreams' authorization servers: OAuth tokens and
client registrations are sealed before they reach the store and opened only in memory.

AES-256-GCM is authenticated, so a changed byte does not open; each seal takes a random 96-bit nonce;
the caller's `context` (which row the value belongs to) is bound as associated data, so a value copied
into another row (another user's grant) does not open either. A sealed value begins with a format
version and the sealing key's id, so after a rotation (a new key put first, the old ones kept after it)
`open` goes straight to the right key and rows sealed before still open.

The key comes from the environment (`MCP_GATEWAY_SECRET_KEY`) or a key file, never from the config
file, which is often committed or shared. A single node on SQLite may instead keep a generated key beside
its database. Replicas sharing PostgreSQL must all be given the same key, or each would seal what the
others cannot open, so for them a missing key is an error rather than a generated one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = structlog.get_logger("mcp_gateway.oauth")

SECRET_KEY_ENV = "MCP_GATEWAY_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
"""The generated key's file in `state_dir` (single node on SQLite only)."""
KEY_BYTES = 32
FORMAT = 1
"""The sealed format's version: the first byte of every sealed value."""
ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = 1 + ID_BYTES + NONCE_BYTES
_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_KEYGEN = "make one with `mcp-gateway auth keygen`"


class VaultError(Exception):
    """No usable key, or a value that does not open; the message never holds key material or plaintext."""


def new_secret_key() -> str:
    """A new key as `MCP_GATEWAY_SECRET_KEY` takes it: URL-safe base64 of 32 random bytes without `=`
    padding, so it goes into shells, env files and Kubernetes secrets without quoting."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode("ascii")


def key_id(key: bytes) -> bytes:
    """A short public name of `key`, written into each value it seals: a hash, so it reveals nothing of the key."""
    return hashlib.sha256(b"mcp-gateway vault key id\0" + key).digest()[:ID_BYTES]


class Vault:
    """Seals with the first key; opens with whichever key sealed (so keys can be rotated without a migration)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise VaultError(f"no secret key: {_KEYGEN}")
        for n, key in enumerate(keys, 1):
            if len(key) != KEY_BYTES:
                raise VaultError(f"secret key {n} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
        self._keys = [(key_id(bytes(k)), AESGCM(bytes(k))) for k in keys]

    @classmethod
    def load(cls, *, env: Mapping[str, str], key_file: Path | None, state_dir: Path, shared_store: bool) -> Vault:
        """The keys from `MCP_GATEWAY_SECRET_KEY`, else from `key_file`, else (only when no other process
        shares the store) from `<state_dir>/secret.key`, generated on first use."""
        if SECRET_KEY_ENV in env:
            return cls(parse_keys(env[SECRET_KEY_ENV], SECRET_KEY_ENV))
        if key_file is not None:
            path = key_file.expanduser()
            return cls(parse_keys(_read_private(path), str(path)))
        if shared_store:
            raise VaultError(f"no secret key to seal OAuth tokens with: set {SECRET_KEY_ENV} to the same value on "
                             f"every replica ({_KEYGEN}), or name a file holding it in gateway.secret_key_file")
        path = state_dir.expanduser() / KEY_FILE_NAME
        if not path.exists():
            _create_key_file(path)
        return cls(parse_keys(_read_private(path), str(path)))

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """`plaintext` encrypted with the first key; it opens only with the same `context`."""
        kid, aead = self._keys[0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        header = bytes([FORMAT]) + kid + nonce
        return header + aead.encrypt(nonce, plaintext, header + context.encode("utf-8"))

    def open(self, sealed: bytes, context: str) -> bytes:
        """What `seal` sealed under `context`; VaultError when no key opens it (the sealing key is not loaded,
        a byte was changed, or the value belongs to another context)."""
        if len(sealed) < _HEADER + TAG_BYTES:
            raise VaultError(f"not a sealed value: {len(sealed)} bytes is too short")
        if sealed[0] != FORMAT:
            raise VaultError(f"sealed in format {sealed[0]}, which this gateway does not know (a newer one wrote it?)")
        header, kid, nonce = sealed[:_HEADER], sealed[1:1 + ID_BYTES], sealed[1 + ID_BYTES:_HEADER]
        candidates = [aead for known, aead in self._keys if known == kid]
        if not candidates:
            raise VaultError(f"sealed with key id {kid.hex()}, which is not among the {len(self._keys)} secret keys "
                             "loaded (an old key removed too soon, or another gateway's store?)")
        for aead in candidates:
            try:
                return aead.decrypt(nonce, sealed[_HEADER:], header + context.encode("utf-8"))
            except InvalidTag:
                continue
        raise VaultError("the sealed value does not open: it was altered, or it belongs to another row")


def parse_keys(text: str, source: str) -> list[bytes]:
    """The keys in `text` (separated by commas or line breaks), first the sealing one; errors name `source`
    and say what is wrong, never echoing the text."""
    parts = [p for p in re.split(r"[\s,]+", text) if p]
    if not parts:
        raise VaultError(f"{source} holds no secret key: {_KEYGEN}")
    keys = []
    for n, part in enumerate(parts, 1):
        which = f"{source}: key {n} of {len(parts)}" if len(parts) > 1 else source
        if not _KEY_TEXT.fullmatch(part):
            raise VaultError(f"{which} is not URL-safe base64 (only letters, digits, - and _): {_KEYGEN}")
        bare = part.rstrip("=")
        try:
            key = base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
        except (binascii.Error, ValueError):
            raise VaultError(f"{which} is not valid base64 (its length is off): {_KEYGEN}") from None
        if len(key) != KEY_BYTES:
            raise VaultError(f"{which} decodes to {len(key)} bytes, not {KEY_BYTES}: {_KEYGEN}")
        keys.append(key)
    return keys


def _read_private(path: Path) -> str:
    """The text of a key file, refused when other users could read or change it (checked on the open file)."""
    try:
        with path.open("rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            if os.name == "posix" and mode & 0o077:
                raise VaultError(f"the key file {path} is open to other users (mode {mode:04o}): "
                                 f"run `chmod 600 {path}`")
            data = f.read()
    except OSError as exc:
        raise VaultError(f"cannot read the key file {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise VaultError(f"the key file {path} is not text: {_KEYGEN}") from None


def _create_key_file(path: Path) -> None:
    """Make `path` with a new key, mode 0600. Two processes starting at once end up with one key: each writes
    its own to a private temporary file and links it to `path`, which only the first does (a link never
    replaces a name), and since the file is complete before it has the name, no one reads it half-written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(new_secret_key() + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(temp, path)
            except FileExistsError:
                return  # another process made it first: its key is the one
        finally:
            temp.unlink(missing_ok=True)
    except OSError as exc:
        raise VaultError(f"cannot create the key file {path}: {exc.strerror or type(exc).__name__}") from None
    log.info("created a secret key for sealing OAuth tokens: back it up with the store, or set "
             f"{SECRET_KEY_ENV} instead", path=str(path))
