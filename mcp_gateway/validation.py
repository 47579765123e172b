"""Checking a call's arguments against the tool's input schema, with one validator per tool.

Validation runs in a worker thread, never on the event loop, and stays linear in the size of the
arguments: `uniqueItems` (which jsonschema checks pairwise for objects and mixed items) compares
canonical forms in a set instead. Messages are cut, since jsonschema's quote the offending value.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import anyio
import jsonschema
import structlog

from .catalog import ToolEntry
from .errors import InvalidArguments

log = structlog.get_logger("mcp_gateway.validation")

MAX_PROBLEMS = 5
"""Problems named in one `InvalidArguments` message."""
MAX_PROBLEM_CHARS = 300
"""Characters of one problem's description."""


class Validators:
    """Validators built on first use; `clear` when the catalog changes."""

    def __init__(self) -> None:
        self._by_tool: dict[tuple[str, str], jsonschema.protocols.Validator | None] = {}

    def clear(self) -> None:
        self._by_tool.clear()

    async def check(self, entry: ToolEntry, args: Mapping[str, Any]) -> None:
        """Raise `InvalidArguments` naming the fields at fault; pass if the tool's own schema is invalid."""
        await anyio.to_thread.run_sync(self.check_now, entry, args)

    def check_now(self, entry: ToolEntry, args: Mapping[str, Any]) -> None:
        """`check`, in the calling thread."""
        key = (entry.server, entry.tool.name)
        if key not in self._by_tool:
            self._by_tool[key] = _make_validator(entry.tool.input_schema)
        validator = self._by_tool[key]
        if validator is None:
            return
        problems = [_describe_error(e) for e in validator.iter_errors(dict(args))]
        if problems:
            name = entry.ref if entry.direct_name is None else entry.direct_name
            raise InvalidArguments(name, problems[:MAX_PROBLEMS])


def _make_validator(tool_schema: Mapping[str, Any]) -> jsonschema.protocols.Validator | None:
    """A validator for the tool's own schema dialect; none if the upstream schema is itself invalid."""
    schema = dict(tool_schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        log.warning("tool schema is invalid; arguments are not validated", error=exc.message)
        return None
    linear: type[jsonschema.protocols.Validator] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        cls, {"uniqueItems": _unique_items})
    return linear(schema)


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    """Only hashes are kept, so no big structure is built (or freed at once, holding the interpreter)."""
    if unique and validator.is_type(instance, "array"):
        seen: dict[int, list[int]] = {}
        for index, item in enumerate(instance):
            earlier = seen.setdefault(hash(_canonical(item)), [])
            if any(_canonical(instance[e]) == _canonical(item) for e in earlier):
                yield jsonschema.ValidationError(f"has non-unique elements (item {index} repeats an earlier one)")
                return
            earlier.append(index)


def _canonical(value: Any) -> Hashable:
    """Equal under JSON Schema's equality exactly when equal here: 1 and 1.0 alike, true and 1 apart."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", int(value) if isinstance(value, float) and value.is_integer() else value)
    if isinstance(value, list | tuple):
        return ("array", tuple(_canonical(v) for v in value))
    if isinstance(value, Mapping):
        return ("object", frozenset((k, _canonical(v)) for k, v in value.items()))
    return ("other", repr(value))


def _describe_error(err: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in err.absolute_path)
    text = f"{where}: {err.message}" if where else err.message
    return text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 1] + "…"
