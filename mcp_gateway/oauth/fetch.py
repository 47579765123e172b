"""Every HTTP request the gateway makes for OAuth, bounded: by size, by time, and never redirected.

The servers asked (an upstream's authorization server, the sign-in provider) are outside the gateway's
control, and some are hostile: an answer is read in chunks up to a byte cap (`ANSWER_MAX_BYTES`, or
`DOCUMENT_MAX_BYTES` for metadata and key sets), refused as soon as it is over (by `Content-Length`, or
as read; a compressed answer is held to the cap once decompressed), and the whole exchange (connecting,
sending, the headers and the body) must end within a deadline, however slowly the server drips its bytes.
A redirect is never followed: the caller sees the 3xx and treats it as the error it is.

`BoundedClient` enforces this in `send`, so every request through it is bounded, including the ones
other code makes with it (the discovery of `metadata.py`, the SDK's registration request); `fetch` is how
the gateway's own code asks, with a cap of its choice.
"""

from __future__ import annotations

import zlib
from typing import Any

import anyio
import httpx2

KIB = 1024
ANSWER_MAX_BYTES = 64 * KIB
"""The most read of a token, registration, introspection or revocation answer (and of any error body)."""
DOCUMENT_MAX_BYTES = 256 * KIB
"""The most read of a metadata document or a key set (JWKS)."""
DEADLINE_S = 10.0
"""The longest a whole exchange may take (connect, send, headers, body); shorter than the store's lock wait
(`storage.oauth.LOCK_WAIT_S`, 15 s), under which a refresh's token request runs."""
TOKEN_MAX_CHARS = 16 * KIB
"""The longest access or refresh token (or scope) the gateway accepts, and seals into the store."""

_LIMIT = "mcp_gateway.max_bytes"
_DEADLINE = "mcp_gateway.deadline_s"


class OutboundError(httpx2.TransportError):
    """An answer the gateway will not read (too large, too slow, encoded unreadably); the message says which,
    naming the server by its origin (never a path or query, which may hold a code)."""


class AnswerTooLarge(OutboundError):
    pass


class AnswerTooSlow(OutboundError):
    pass


class AnswerUnreadable(OutboundError):
    pass


def origin(url: httpx2.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"


def describe(exc: httpx2.HTTPError) -> str:
    """What went wrong, for a log line or an error: the gateway's own bound in words, else the error's kind."""
    return str(exc) if isinstance(exc, OutboundError) else type(exc).__name__


class BoundedClient(httpx2.AsyncClient):
    """An httpx client whose every answer is read at once within `max_bytes` (a request may ask for another
    cap through `fetch`) and whose every exchange ends within `deadline_s`; redirects are not followed."""

    def __init__(self, *, max_bytes: int = ANSWER_MAX_BYTES, deadline_s: float = DEADLINE_S) -> None:
        super().__init__(timeout=httpx2.Timeout(deadline_s), follow_redirects=False)
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s

    async def send(self, request: httpx2.Request, *, stream: bool = False, auth: Any = httpx2.USE_CLIENT_DEFAULT,
                   follow_redirects: Any = False) -> httpx2.Response:
        limit = int(request.extensions.get(_LIMIT, self.max_bytes))
        deadline = float(request.extensions.get(_DEADLINE, self.deadline_s))
        request.headers["accept-encoding"] = "identity"
        try:
            with anyio.fail_after(deadline):
                response = await super().send(request, stream=True, auth=auth, follow_redirects=False)
                try:
                    body = await _read_within(response, limit)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise AnswerTooSlow(f"{origin(request.url)} did not answer within {deadline:g} s",
                                request=request) from None
        headers = httpx2.Headers(response.headers)
        for name in ("content-encoding", "content-length", "transfer-encoding"):
            headers.pop(name, None)
        return httpx2.Response(response.status_code, headers=headers, content=body, request=request,
                               extensions=response.extensions, history=response.history)


async def fetch(http: BoundedClient, method: str, url: str, *, max_bytes: int | None = None,
                data: dict[str, str] | None = None, auth: httpx2.Auth | None = None,
                headers: dict[str, str] | None = None) -> httpx2.Response:
    """The answer to one request, read within `max_bytes` (the client's cap by default) and the client's
    deadline. Raises `httpx2.HTTPError`: an `OutboundError` when a bound was hit."""
    if not isinstance(http, BoundedClient):  # a plain client would read whatever comes, for as long as it comes
        raise TypeError("outbound OAuth requests are made with a BoundedClient")
    extensions = {_LIMIT: max_bytes} if max_bytes is not None else None
    return await http.request(method, url, data=data, auth=auth or httpx2.USE_CLIENT_DEFAULT,
                              headers={"accept": "application/json", **(headers or {})}, extensions=extensions)


async def _read_within(response: httpx2.Response, limit: int) -> bytes:
    """The decoded body, or `AnswerTooLarge` as soon as it is over `limit` bytes (declared, or read)."""
    where = origin(response.request.url)
    too_large = f"the answer of {where} is over {_size(limit)}, more than the gateway reads"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AnswerTooLarge(too_large, request=response.request)
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("identity", "", "gzip", "deflate"):
        raise AnswerUnreadable(f"the answer of {where} is encoded as {coding[:20]!r}, which was not asked for",
                               request=response.request)
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS) \
        if coding in ("gzip", "deflate") else None
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            # decompressed no further than the cap allows (a small compressed answer may inflate a thousandfold)
            body += decoder.decompress(chunk, limit + 1 - len(body)) if decoder is not None else chunk
            if len(body) > limit:
                raise AnswerTooLarge(too_large, request=response.request)
    except zlib.error:
        raise AnswerUnreadable(f"the answer of {where} does not decompress", request=response.request) from None
    return bytes(body)


def _size(n: int) -> str:
    return f"{n // KIB} KiB" if n % KIB == 0 else f"{n} bytes"
