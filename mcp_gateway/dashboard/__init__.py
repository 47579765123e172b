"""The dashboard: read-only pages at `/ui` for admin keys (`routes.py`, docs/dashboard.md)."""
