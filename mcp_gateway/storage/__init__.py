"""Durable state behind one interface (`Storage`), with one implementation per backend."""

from __future__ import annotations

from pathlib import Path

from ..config import SQLITE_PREFIX, GatewayConfig
from .base import AuditRow, Budget, Counters, SharedSession, Storage, StoredKey, Window
from .errors import StorageUnavailable
from .postgres import PostgresStorage
from .sqlite import SQLiteStorage

__all__ = ["AuditRow", "Budget", "Counters", "PostgresStorage", "SQLiteStorage", "SharedSession", "Storage",
           "StorageUnavailable", "StoredKey", "Window", "open_storage"]


def open_storage(config: GatewayConfig) -> Storage:
    """The backend `[storage] url` names (nothing is opened until first use)."""
    settings = config.storage
    url = settings.url
    if url is None:
        return SQLiteStorage(Path(config.gateway.state_dir) / "gateway.db")
    if url.startswith(SQLITE_PREFIX):
        return SQLiteStorage(url[len(SQLITE_PREFIX):])
    return PostgresStorage(url, pool_size=settings.pool_size, connect_timeout_s=settings.connect_timeout_s,
                           query_timeout_s=settings.query_timeout_s, synchronous_commit=settings.synchronous_commit)
