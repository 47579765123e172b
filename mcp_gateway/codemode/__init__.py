"""Code Mode: the four meta-tools a client sees, and the scripts that call the upstreams' tools."""

from .metatools import HANDLERS, META_NAMES, META_TOOLS
from .scripts import Progress, execute, format_execution

__all__ = ["HANDLERS", "META_NAMES", "META_TOOLS", "Progress", "execute", "format_execution"]
