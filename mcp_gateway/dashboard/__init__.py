"""The dashboard: read-only pages at `/ui` for admin keys (`routes.py`, docs/dashboard.md)."""

from .routes import routes

__all__ = ["routes"]
