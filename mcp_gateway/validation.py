"""Checking a call's arguments against the tool's input schema, and its result's structured content
against the tool's output schema, with one validator per tool and schema.

Validation of anything but small values runs in a worker thread, never on the event loop, and stays
linear in the size of the value: `uniqueItems` (which jsonschema checks pairwise for objects and mixed
items) compares canonical forms in a set instead. A `$ref` to another document is never fetched.
Messages are cut, since jsonschema's quote the offending value.

Results are checked here rather than by the SDK client, which would do it on the event loop (175,000
small objects held it 2.6 s) and list the upstream's tools first when its session has not
(`upstream_client.open_client` switches the client's own check off).

An argument the tool does not take is refused the way Python refuses an unexpected keyword
argument, naming the closest parameter, unless the schema explicitly allows other properties
(`additionalProperties` true or a schema, `patternProperties`, `unevaluatedProperties`): JSON
Schema allows them by default, but a misspelt name silently left out (`max_cont=1`) changes
what the call means.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, Literal

import anyio
import jsonschema
import mcp_types as types
import referencing
import referencing.exceptions
import structlog

from stubs import resolve_ref

from .catalog import ToolEntry
from .errors import GatewayError, InvalidArguments, InvalidOutput
from .patterns import OVERRIDES, uses_patterns

log = structlog.get_logger("mcp_gateway.validation")

_LOCAL_ONLY: referencing.Registry[Any] = referencing.Registry()
"""No retrieval: a schema's `$ref` to another document is never fetched (jsonschema would use urllib)."""
INLINE_NODES = 200
"""Arguments or structured content with at most this many values (and short strings) are validated
without a thread hop."""
MAX_PROBLEMS = 5
"""Problems named in one `InvalidArguments` or `InvalidOutput` message."""
MAX_PROBLEM_CHARS = 300
"""Characters of one problem's description."""
MAX_LISTED = 20
"""Parameters listed when an unexpected argument is like none of them."""
_MAX_PARTS = 200
"""Subschemas walked to find the properties a schema names."""
Schema = Literal["input", "output"]


class UnexpectedArguments(InvalidArguments):
    """Arguments the tool does not take, each with the parameter it most likely meant."""

    def __init__(self, ref: str, unexpected: list[str], known: list[str]) -> None:
        hints = {name: difflib.get_close_matches(name, known, n=1, cutoff=0.6) for name in unexpected}
        if len(unexpected) == 1:
            [(name, close)] = hints.items()
            text = f"unexpected keyword argument {name!r} for {ref}"
        else:
            names = ", ".join(f"{n!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for n, c in hints.items())
            text, close = f"unexpected keyword arguments for {ref}: {names}", []
        if close:
            text += f"; did you mean {close[0]!r}?"
        elif not any(hints.values()):
            listed = ", ".join(known[:MAX_LISTED]) + (", ..." if len(known) > MAX_LISTED else "")
            text += f"; it takes {listed}" if known else f"; {ref} takes no arguments"
        GatewayError.__init__(self, text)


class Validators:
    """Validators built on first use, one per tool and schema (input, output); `clear` when the catalog changes."""

    def __init__(self) -> None:
        self._by_tool: dict[tuple[str, str, Schema], jsonschema.protocols.Validator | None] = {}
        self._names: dict[tuple[str, str], frozenset[str] | None] = {}
        self._patterned: dict[tuple[str, str, Schema], bool] = {}

    def clear(self) -> None:
        self._by_tool.clear()
        self._names.clear()
        self._patterned.clear()

    def _inline(self, entry: ToolEntry, which: Schema, value: Any) -> bool:
        """Whether `value` is checked at once: small, and against a schema without regular expressions (a
        match may take up to `patterns.MATCH_TIMEOUT_S`, off the event loop)."""
        key = (entry.server, entry.tool.name, which)
        if key not in self._patterned:
            self._patterned[key] = uses_patterns(entry.tool.input_schema if which == "input" else
                                                 entry.tool.output_schema)
        return _small(value) and not self._patterned[key]

    async def check(self, entry: ToolEntry, args: Mapping[str, Any]) -> None:
        """Raise `InvalidArguments` naming the fields at fault; pass if the tool's own schema is invalid.

        Small arguments (at most `INLINE_NODES` values) are checked at once; others in a worker thread.
        """
        if self._inline(entry, "input", args):
            self.check_now(entry, args)
        else:
            await anyio.to_thread.run_sync(self.check_now, entry, args)

    def check_now(self, entry: ToolEntry, args: Mapping[str, Any]) -> None:
        """`check`, in the calling thread."""
        key = (entry.server, entry.tool.name)
        if (*key, "input") not in self._by_tool:
            self._names[key] = argument_names(entry.tool.input_schema)  # first: `_by_tool` says both are there
        validator = self._validator(entry, "input")
        if validator is None:
            return
        name = _name(entry)
        names = self._names.get(key)
        unexpected = [k for k in args if k not in names] if names is not None else []
        if unexpected:
            raise UnexpectedArguments(name, unexpected[:MAX_PROBLEMS], _known(entry, names or frozenset()))
        problems = _problems(validator, dict(args), entry, "arguments are checked by the upstream only")
        if problems:
            raise InvalidArguments(name, problems)

    async def check_result(self, entry: ToolEntry, result: types.CallToolResult) -> None:
        """Raise `InvalidOutput` if the tool declares an output schema and a result that is not an error
        has no structured content, or content the schema refuses; pass if that schema is itself invalid.

        Small content (at most `INLINE_NODES` values) is checked at once; other content in a worker thread.
        """
        if entry.tool.output_schema is None or result.is_error:
            return
        content = result.structured_content
        if content is None:
            raise InvalidOutput(_name(entry), None)
        if self._inline(entry, "output", content):
            self.check_result_now(entry, content)
        else:
            await anyio.to_thread.run_sync(self.check_result_now, entry, content)

    def check_result_now(self, entry: ToolEntry, content: Mapping[str, Any]) -> None:
        """`check_result` of a result's structured content, in the calling thread."""
        validator = self._validator(entry, "output")
        if validator is None:
            return
        problems = _problems(validator, content, entry, "its results are not checked")
        if problems is None:  # a `$ref` outside the schema: said once, then results go unchecked
            self._by_tool[(entry.server, entry.tool.name, "output")] = None
        elif problems:
            raise InvalidOutput(_name(entry), problems)

    def _validator(self, entry: ToolEntry, which: Schema) -> jsonschema.protocols.Validator | None:
        key = (entry.server, entry.tool.name, which)
        if key in self._by_tool:
            return self._by_tool[key]
        schema = entry.tool.input_schema if which == "input" else entry.tool.output_schema
        validator = None if schema is None else _make_validator(schema, entry, which)
        self._by_tool[key] = validator
        return validator


def _name(entry: ToolEntry) -> str:
    """The tool as its caller names it: `server.identifier` in scripts, the direct-mode name otherwise."""
    return entry.ref if entry.direct_name is None else entry.direct_name


def _problems(validator: jsonschema.protocols.Validator, value: Any, entry: ToolEntry, unchecked: str
              ) -> list[str] | None:
    """The first `MAX_PROBLEMS` problems, described and cut; None if the schema has a `$ref` outside itself
    (nothing is fetched), which is logged, saying what then goes `unchecked`."""
    try:
        return [_describe_error(e) for e in itertools.islice(validator.iter_errors(value), MAX_PROBLEMS)]
    except referencing.exceptions.Unresolvable as exc:
        log.warning("tool schema refers outside itself; " + unchecked,
                    server=entry.server, tool=entry.tool.name, ref=str(exc)[:200])
        return None


def _known(entry: ToolEntry, names: frozenset[str]) -> list[str]:
    """The parameters as the caller names them: identifiers in scripts (the stub's), else the schema's names."""
    if entry.direct_name is not None:
        return [*entry.params.values(), *sorted(names - set(entry.params.values()))]
    return [*entry.params, *sorted(n for n in names - set(entry.params.values()) if n.isidentifier())]


def argument_names(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """Every property name the schema gives an argument object, or None if it allows others.

    Follows local `$ref`s and the members of `allOf`, `anyOf`, `oneOf`, `if`/`then`/`else` and
    `dependentSchemas` (a name any of them gives is known). A schema that explicitly allows
    other properties, has a `$ref` that cannot be followed, or is too big to walk gives None.
    """
    names: set[str] = set()
    todo: list[Any] = [schema]
    seen: set[str] = set()
    for _ in range(_MAX_PARTS):
        if not todo:
            return frozenset(names)
        part = todo.pop()
        if not isinstance(part, Mapping):
            continue
        if _allows_others(part):
            return None
        props, required = part.get("properties"), part.get("required")
        names.update(k for k in (props if isinstance(props, Mapping) else ()) if isinstance(k, str))
        names.update(k for k in (required if isinstance(required, list) else ()) if isinstance(k, str))
        for word in ("allOf", "anyOf", "oneOf"):
            members = part.get(word)
            todo.extend(members if isinstance(members, list) else [])
        todo.extend(part.get(word) for word in ("if", "then", "else"))
        dependent = part.get("dependentSchemas")
        todo.extend(dependent.values() if isinstance(dependent, Mapping) else [])
        ref = part.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            target = resolve_ref(ref, schema)
            if target is None:
                return None
            todo.append(target)
    return None


def _allows_others(part: Mapping[str, Any]) -> bool:
    return (part.get("additionalProperties", False) is not False or bool(part.get("patternProperties"))
            or part.get("unevaluatedProperties", False) is not False)


def _make_validator(tool_schema: Mapping[str, Any], entry: ToolEntry, which: Schema
                    ) -> jsonschema.protocols.Validator | None:
    """A validator for the tool's own schema dialect; none if the upstream schema is itself invalid."""
    schema = dict(tool_schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        log.warning("tool schema is invalid; arguments are not validated" if which == "input" else
                    "tool output schema is invalid; its results are not validated",
                    server=entry.server, tool=entry.tool.name, error=exc.message[:MAX_PROBLEM_CHARS])
        return None
    linear: type[jsonschema.protocols.Validator] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        cls, {"uniqueItems": _unique_items, **OVERRIDES})
    return linear(schema, registry=_LOCAL_ONLY)


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    """Only hashes and indexes are kept: no container per item, so nothing for the garbage collector to
    walk or to free at once while holding the interpreter (a list per item stalled the loop ~0.1 s at
    200,000 items). Items are compared only when their hashes collide."""
    if unique and validator.is_type(instance, "array"):
        seen: dict[int, int | list[int]] = {}
        for index, item in enumerate(instance):
            key = _canonical(item)
            earlier = seen.setdefault(hash(key), index)
            if earlier == index:
                continue
            indexes = earlier if isinstance(earlier, list) else [earlier]
            if any(_canonical(instance[e]) == key for e in indexes):
                yield jsonschema.ValidationError(f"has non-unique elements (item {index} repeats an earlier one)")
                return
            indexes.append(index)
            seen[hash(key)] = indexes


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


def _small(root: Mapping[str, Any]) -> bool:
    """At most `INLINE_NODES` values and no string over 10,000 characters (stops counting at the bound)."""
    stack: list[Any] = [root]
    seen = 0
    while stack:
        value = stack.pop()
        seen += 1
        if seen > INLINE_NODES or (isinstance(value, str) and len(value) > 10_000):
            return False
        if isinstance(value, Mapping | list | tuple):
            if len(value) > INLINE_NODES:
                return False
            stack.extend(value.values() if isinstance(value, Mapping) else value)
    return True
