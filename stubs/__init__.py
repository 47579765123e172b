"""Upstream MCP tools as Python stub files, for Code Mode.

Pure functions of tool definitions: no I/O and no imports from the gateway or the sandbox, so
the output can be tested (and cached) on its own. `names` maps tool and parameter names to
script identifiers, `schema` turns JSON Schemas into type expressions, `typed` names objects
as TypedDicts, `render` writes stubs and docs, `search` ranks tools for a query, `vfs` serves
them as the `servers/` directory.
"""

from .names import assign_identifiers, is_identifier, to_identifier
from .render import (
    ToolSpec,
    first_sentence,
    param_map,
    render_docs,
    render_server_stub,
    render_signature,
    render_tool_stub,
)
from .schema import Renderer, type_expr
from .search import rank
from .typed import TypedRenderer, TypeTable
from .vfs import FileNotFound, ServerEntry, ToolFiles, UnknownServer, line_range

__all__ = [
    "FileNotFound",
    "Renderer",
    "ServerEntry",
    "ToolFiles",
    "ToolSpec",
    "TypeTable",
    "TypedRenderer",
    "UnknownServer",
    "assign_identifiers",
    "first_sentence",
    "is_identifier",
    "line_range",
    "param_map",
    "rank",
    "render_docs",
    "render_server_stub",
    "render_signature",
    "render_tool_stub",
    "to_identifier",
    "type_expr",
]
