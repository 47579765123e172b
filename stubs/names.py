"""Names that are valid in both a Python stub and a Starlark script.

Scripts call `server.identifier(arg=value)`, so every tool and parameter name must be an
identifier in both languages. Upstream names are arbitrary strings (`API-get-user`,
`list.items`, `from`), so they are mapped deterministically: the same name always gives the
same identifier, whatever else the server offers, except where two names collide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["RESERVED", "assign_identifiers", "is_identifier", "to_identifier"]

# Python keywords, Starlark keywords and the words Starlark reserves for future use. Spelled out
# (not `keyword.kwlist`) so identifiers do not change with the Python version running the gateway.
# Soft keywords (`match`, `case`, `type`, `_`) are left out on purpose: they are valid names in
# every position of Python and Starlark, and renaming the common `type` property would only cost
# a parameter mapping.
RESERVED: frozenset[str] = frozenset(
    {
        "False", "None", "True",
        "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
        "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is",
        "lambda", "load", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
        "with", "yield",
    }
)  # fmt: skip

# Starlark identifiers are ASCII only, so Python's wider Unicode rules do not apply.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_IDENTIFIER_CHAR = re.compile(r"[^A-Za-z0-9_]")


def is_identifier(s: str) -> bool:
    """True if `s` can be used as a name in a script: ASCII identifier and not reserved."""
    return _IDENTIFIER.fullmatch(s) is not None and s not in RESERVED


def to_identifier(name: str) -> str:
    """The identifier scripts use for `name`, computed from the name alone.

    Each character that cannot appear in an identifier becomes `_` (one for one, so the result
    stays recognisable); camelCase is kept because the model sees the same spelling as upstream.
    """
    ident = _NOT_IDENTIFIER_CHAR.sub("_", name)
    if not ident:
        return "_"
    if ident[0].isdigit():
        ident = "_" + ident
    if ident in RESERVED:
        ident += "_"
    return ident


def assign_identifiers(names: Sequence[str]) -> dict[str, str]:
    """Map every name of one server to a distinct identifier, independent of input order.

    Names that are already identifiers keep themselves, so the common case never changes when
    a new tool appears. The others get `to_identifier(name)`, and on a collision the names are
    taken in sorted order and the 2nd, 3rd ... get `_2`, `_3` ... (skipping taken ones).
    """
    unique = sorted(set(names))
    result = {n: n for n in unique if is_identifier(n)}
    taken = set(result.values())
    for name in unique:
        if name in result:
            continue
        base = to_identifier(name)
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}_{n}"
        result[name] = ident
        taken.add(ident)
    return result
