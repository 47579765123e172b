"""mcp-gateway: many upstream MCP servers behind one endpoint, with Code Mode.

Embedding, in short (see docs/embedding.md):

    async with Gateway(load_config("gateway.toml")) as gw:
        tools = list_tools(gw)                                   # the meta-tools and direct tools
        result = await call(gw, "executeToolCode", {"code": "result = time.get_current_time(timezone='UTC')"})

`build_app(gw)` is an ASGI app serving `/mcp`; `build_server(gw)` is the SDK server, usable with
`mcp.Client(build_server(gw))` in-process; `acting_as(identity)` applies a key's allowlist.
"""

from ._version import __version__
from .config import ConfigError, GatewayConfig
from .config_files import load_config, parse_config
from .gateway import Gateway
from .governance.identity import Identity, acting_as
from .server import build_app, build_server, serve_stdio
from .tools import dispatch_call as call
from .tools import visible_tools as list_tools

__all__ = [
    "ConfigError",
    "Gateway",
    "GatewayConfig",
    "Identity",
    "__version__",
    "acting_as",
    "build_app",
    "build_server",
    "call",
    "list_tools",
    "load_config",
    "parse_config",
    "serve_stdio",
]
