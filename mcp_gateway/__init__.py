"""mcp-gateway: many upstream MCP servers behind one endpoint, with Code Mode."""

__version__ = "0.1.0"

from .config import ConfigError, GatewayConfig, load_config, parse_config
from .gateway import Gateway

__all__ = ["ConfigError", "Gateway", "GatewayConfig", "__version__", "load_config", "parse_config"]
