"""Text shown to a person (approval questions, `mcp-gateway logs`): nothing in it may hide or forge.

Control characters (CR, LF, ANSI escapes), format characters (bidirectional overrides, zero-width
characters), private-use, surrogate and line/paragraph separator characters are written as `\\u{XXXX}`.
"""

from __future__ import annotations

import unicodedata

_HIDDEN = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})


def visible(text: str) -> str:
    return "".join(f"\\u{{{ord(c):04X}}}" if unicodedata.category(c) in _HIDDEN else c for c in text)
