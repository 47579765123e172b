"""Durable state behind one interface (`Storage`), with one implementation per backend."""

from .base import AuditRow, Storage, StoredKey
from .sqlite import SQLiteStorage, open_storage

__all__ = ["AuditRow", "SQLiteStorage", "Storage", "StoredKey", "open_storage"]
