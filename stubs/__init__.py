"""Upstream MCP tools as Python stub files, for Code Mode.

Pure functions of tool definitions: no I/O and no imports from the gateway or the sandbox, so
the output can be tested (and cached) on its own. `names` maps tool and parameter names to
script identifiers, `tool` lists a tool's parameters under them, `refs` resolves `$ref`s and
bounds every walk over a schema, `nodes` reads one schema node through them, `schema` turns JSON
Schemas into type expressions, `typed` names objects as TypedDicts, `render` writes stubs, `docs`
a tool's full documentation (with the stub's class names; nested fields through `fields`,
validation keywords through `constraints`), `search` ranks tools for a query, `vfs` serves them
as the `servers/` directory.

The names below are what the rest of the project uses; everything else is internal to the
package (tests import it from its module).
"""

from .docs import render_docs
from .names import assign_identifiers, is_identifier, to_identifier
from .refs import resolve_ref
from .render import render_server_stub, render_tool_stub
from .schema import accepts_null
from .tool import Param, ToolSpec, parameters
from .vfs import FileNotFound, ServerEntry, ToolFiles, UnknownServer, line_range

__all__ = [
    "FileNotFound",
    "Param",
    "ServerEntry",
    "ToolFiles",
    "ToolSpec",
    "UnknownServer",
    "accepts_null",
    "assign_identifiers",
    "is_identifier",
    "line_range",
    "parameters",
    "render_docs",
    "render_server_stub",
    "render_tool_stub",
    "resolve_ref",
    "to_identifier",
]
