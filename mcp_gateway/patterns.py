"""JSON Schema's regular expressions (`pattern`, `patternProperties`, and `additionalProperties` beside
them), matched with a time limit.

jsonschema matches them with `re`, whose backtracking can take exponential time while it holds the
interpreter (`^(a+)+$` against 25 `a`s and a `!`: 4.6 s of a frozen gateway, doubling with each
`a`), and both halves may be hostile: a tool's schema comes from its upstream, the value from the
caller or the upstream. Here they are matched by the `regex` module, which lets go of the
interpreter while it matches and gives up after `MATCH_TIMEOUT_S`. A match that does not end in
time, or a pattern it cannot compile, is a validation error saying so: the value is refused, never
let through unchecked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import jsonschema
import regex

MATCH_TIMEOUT_S = 0.05
"""Longest one match may take."""
KEYWORDS = ("pattern", "patternProperties")


class Unmatchable(Exception):
    """A pattern that cannot be compiled, or whose match did not end within `MATCH_TIMEOUT_S`."""


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> regex.Pattern[str] | str:
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        return f"the schema's pattern {pattern!r} is not a regular expression the gateway reads ({exc})"


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches somewhere in `text`; `Unmatchable` if that cannot be told in time."""
    compiled = _compiled(pattern)
    if isinstance(compiled, str):
        raise Unmatchable(compiled)
    try:
        return compiled.search(text, timeout=MATCH_TIMEOUT_S) is not None
    except TimeoutError:
        raise Unmatchable(f"matching the schema's pattern {pattern!r} took over {MATCH_TIMEOUT_S:g} s") from None


def uses_patterns(schema: Any) -> bool:
    """Whether any part of `schema` has a pattern keyword (its checks then run off the event loop)."""
    todo, seen = [schema], 0
    while todo and seen < 10_000:
        part, seen = todo.pop(), seen + 1
        if isinstance(part, Mapping):
            if any(k in part for k in KEYWORDS):
                return True
            todo.extend(part.values())
        elif isinstance(part, list):
            todo.extend(part)
    return bool(todo)  # too big to look through: as if it had


def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string"):
        try:
            if not search(patrn, instance):
                yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")
        except Unmatchable as exc:
            yield jsonschema.ValidationError(str(exc))


def pattern_properties(validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
                       ) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        for name, value in instance.items():
            try:
                found = search(patrn, name)
            except Unmatchable as exc:
                yield jsonschema.ValidationError(str(exc))
                continue
            if found:
                yield from validator.descend(value, subschema, path=name, schema_path=patrn)


def additional_properties(validator: Any, allowed: Any, instance: Any, schema: Mapping[str, Any]
                          ) -> Iterator[jsonschema.ValidationError]:
    """jsonschema's keyword, but a name a pattern cannot be matched against in time counts as additional."""
    if not validator.is_type(instance, "object"):
        return
    named, patterns = schema.get("properties", {}), list(schema.get("patternProperties", {}))
    extras = [name for name in instance if name not in named and not any(_quietly(p, name) for p in patterns)]
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        listed = ", ".join(repr(name) for name in sorted(extras))
        yield jsonschema.ValidationError(f"Additional properties are not allowed ({listed} "
                                         f"{'was' if len(extras) == 1 else 'were'} unexpected)")


def _quietly(patrn: str, name: str) -> bool:
    try:
        return search(patrn, name)
    except Unmatchable:
        return False


OVERRIDES = {"pattern": pattern, "patternProperties": pattern_properties, "additionalProperties": additional_properties}
"""The keywords a validator class is extended with."""
