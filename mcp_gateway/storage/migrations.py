"""Versioned schema migrations: numbered SQL files per backend (`sql/<backend>/NNNN_name.sql`).

Each backend applies the ones its `schema_migrations` table does not list, in order, each in one
transaction with its row, under a lock so replicas starting together apply each once. Plain SQL
files keep the schema readable beside the code; a migration library would bring an ORM or a
second, synchronous driver for what is a loop over a sorted folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from .errors import StorageUnavailable

_FILE = re.compile(r"(\d{4})_(\w+)\.sql")

TABLE = "schema_migrations"


@dataclass(frozen=True, order=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def migrations(backend: str) -> list[Migration]:
    """The backend's migrations in order; versions must run 1, 2, 3... with none missing."""
    folder = resources.files(__package__).joinpath("sql", backend)
    found = sorted(
        Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if (m := _FILE.fullmatch(entry.name))
    )
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..{len(found)}: {versions}")
    return found


def pending(backend: str, applied: set[int]) -> list[Migration]:
    """What a store with the `applied` versions still needs; refuses a store newer than this code."""
    known = migrations(backend)
    newer = sorted(v for v in applied if v > len(known))
    if newer:
        raise StorageUnavailable(f"the store's schema is at version {max(newer)}, newer than this gateway knows "
                           f"({len(known)}): upgrade the gateway before using this store")
    return [m for m in known if m.version not in applied]
