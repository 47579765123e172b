"""Sandboxed execution of Code Mode scripts: Starlark in disposable worker processes.

Pure with respect to the gateway: it knows nothing of MCP; tools are plain names
("server.tool") and a caller callback.
"""

from .limits import MIN_MEMORY_MB, Limits, PoolLimits
from .pool import Sandbox
from .process import SandboxError
from .result import ExecutionResult, ScriptError, ToolCaller, ToolError
from .rewrite import direct_tool, rewrite
from .values import finish, json_steps

__all__ = [
    "MIN_MEMORY_MB",
    "ExecutionResult",
    "Limits",
    "PoolLimits",
    "Sandbox",
    "SandboxError",
    "ScriptError",
    "ToolCaller",
    "ToolError",
    "direct_tool",
    "finish",
    "json_steps",
    "rewrite",
]
