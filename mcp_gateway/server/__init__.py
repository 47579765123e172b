"""The gateway as an MCP server: over streamable HTTP (`build_app`, `serve_http`) or stdio (`serve_stdio`)."""

from .app import build_app, serve_http, serve_stdio
from .handlers import build_server

__all__ = ["build_app", "build_server", "serve_http", "serve_stdio"]
