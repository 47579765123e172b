"""The errors a gateway user sees. Each message is written for the reader of a tool result."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from mcp.shared.exceptions import MCPError


class GatewayError(Exception):
    """Base class: `str(exc)` is the message shown to the client."""


class UnknownTool(GatewayError):
    def __init__(self, ref: str, known: Iterable[str]) -> None:
        close = difflib.get_close_matches(ref, list(known), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown tool {ref}{hint}")


class InvalidArguments(GatewayError):
    def __init__(self, ref: str, problems: list[str]) -> None:
        super().__init__(f"invalid arguments for {ref}: " + "; ".join(problems))


class InvalidOutput(GatewayError):
    """A result that breaks the tool's own output schema: structured content it refuses (`problems`), or
    none at all (`problems` None). The caller gets this error instead of the result."""

    def __init__(self, ref: str, problems: list[str] | None) -> None:
        super().__init__(
            f"{ref} returned no structured content, although it declares an output schema" if problems is None else
            f"{ref} returned structured content that does not match its output schema: " + "; ".join(problems))


class UpstreamUnavailable(GatewayError):
    def __init__(self, server: str, status: str, hint: str | None = None) -> None:
        super().__init__(f"{server} is unavailable ({status}): {hint}" if hint else
                         f"server {server} is unavailable ({status})")


class LoginNeeded(GatewayError):
    """An upstream that acts as each caller has no login of this caller's; the message carries the link."""


class QuotaExceeded(GatewayError):
    """A rate limit or budget of the caller's key or team is used up."""


class ApprovalRefused(GatewayError):
    """The tool needs the user's approval, and the user refused or could not be asked.

    `decision` is what the call's audit row records: the user's answer (`decline`, `cancel`), or why
    nobody was asked (`unsupported`: the client cannot ask; `too_long`: the arguments cannot be shown)."""

    def __init__(self, message: str, decision: str) -> None:
        super().__init__(message)
        self.decision = decision


class KeyRevoked(GatewayError):
    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key} was revoked: no more calls are made with it")


class AuditUnavailable(GatewayError):
    """The audit log cannot be written, so the call is not made."""

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"{ref} was not called: the audit log cannot be written ({reason})")


class UpstreamError(GatewayError):
    def __init__(self, ref: str, message: str) -> None:
        super().__init__(f"{ref} failed: {message}")


def describe_exception(exc: BaseException) -> str:
    """A one-line description, unwrapping the exception groups the SDK raises; a cause that only
    repeats the text already given (httpx wraps one error three times) is left out."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, OSError) or cause is None:
        return text
    why = describe_exception(cause)
    return text if why in text else why if text in why else f"{text} ({why})"


class StoreUnavailable(GatewayError):
    """The gateway's store (keys, audit, limits) cannot answer, so nothing that needs it is done."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"refused: {what} cannot be checked because the gateway's store is unavailable "
                         f"({reason}); try again shortly")
