"""Checking a call's arguments against the tool's input schema, with one validator per tool."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
import structlog

from .catalog import ToolEntry
from .errors import InvalidArguments

log = structlog.get_logger("mcp_gateway.validation")

MAX_PROBLEMS = 5
"""Problems named in one `InvalidArguments` message."""


class Validators:
    """Validators built on first use; `clear` when the catalog changes."""

    def __init__(self) -> None:
        self._by_tool: dict[tuple[str, str], jsonschema.protocols.Validator | None] = {}

    def clear(self) -> None:
        self._by_tool.clear()

    def check(self, entry: ToolEntry, args: Mapping[str, Any]) -> None:
        """Raise `InvalidArguments` naming the fields at fault; pass if the tool's own schema is invalid."""
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
    return cls(schema)


def _describe_error(err: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in err.absolute_path)
    return f"{where}: {err.message}" if where else err.message
