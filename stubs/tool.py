"""One upstream tool as the stub renderers see it, and its parameters under script names.

Signatures, docs and the gateway's argument mapping must agree on every parameter's identifier,
so all of them get the list from `parameters` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .names import assign_identifiers
from .refs import parts

__all__ = ["Param", "ToolSpec", "param_map", "parameters", "properties_of", "required_of"]

_NO_DEFAULT = object()


@dataclass(frozen=True)
class ToolSpec:
    """An upstream tool: `name` is what the upstream calls it, `identifier` what scripts call.

    `identifier` must satisfy `is_identifier` (use `assign_identifiers`), or stubs will not parse.
    """

    name: str
    identifier: str
    description: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Param:
    """One input property; required ones come first in `parameters`, as Python needs."""

    name: str
    identifier: str
    schema: Mapping[str, Any] | bool
    required: bool
    default: Any = _NO_DEFAULT

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


def properties_of(schema: Any, root: Mapping[str, Any]) -> dict[str, Mapping[str, Any] | bool]:
    """An object schema's properties, following `$ref` and merging `allOf` members."""
    found: dict[str, Mapping[str, Any] | bool] = {}
    for part in parts(schema, root):
        props = part.get("properties")
        if isinstance(props, Mapping):
            for key, value in props.items():
                if isinstance(key, str) and isinstance(value, Mapping | bool):
                    found.setdefault(key, value)
    return found


def required_of(schema: Any, root: Mapping[str, Any]) -> list[str]:
    """Names an object schema requires (own list, then from `$ref` and `allOf` members)."""
    names: list[str] = []
    for part in parts(schema, root, breadth_first=True):
        req = part.get("required")
        names.extend(n for n in (req if isinstance(req, list) else []) if isinstance(n, str) and n not in names)
    return names


def parameters(tool: ToolSpec) -> list[Param]:
    """The tool's parameters: required ones in schema order, then optional ones.

    Names listed in `required` without a property schema are kept (typed `Any`): the upstream
    will reject calls that omit them, so the model must see them.
    """
    root = tool.input_schema
    props = properties_of(root, root)
    required = required_of(root, root)
    for name in required:
        props.setdefault(name, True)
    idents = assign_identifiers(list(props))
    params = [_param(name, idents[name], schema, name in required) for name, schema in props.items()]
    return [p for p in params if p.required] + [p for p in params if not p.required]


def _param(name: str, identifier: str, schema: Mapping[str, Any] | bool, required: bool) -> Param:
    if not required and isinstance(schema, Mapping) and "default" in schema:
        return Param(name, identifier, schema, required, schema["default"])
    return Param(name, identifier, schema, required)


def param_map(tool: ToolSpec) -> dict[str, str]:
    """Script keyword (identifier) -> upstream property name, for every parameter."""
    return {p.identifier: p.name for p in parameters(tool)}
