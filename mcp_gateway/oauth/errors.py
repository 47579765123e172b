"""What goes wrong with the gateway's own OAuth logins to upstreams (no secret is ever in a message)."""

from __future__ import annotations


class LoginRequired(Exception):
    """`server` has no usable login for `owner` (none yet, refused refresh, revoked): someone must log in."""

    def __init__(self, server: str, owner: str, why: str) -> None:
        self.server, self.owner, self.why = server, owner, why
        super().__init__(f"{server} needs an OAuth login ({why})")


class TokenRequestError(Exception):
    """A token request failed; the message is the server's error code, never a secret. `refused`: the server
    answered no (the grant is dead); else it could not be asked (the grant is kept for the next try)."""

    def __init__(self, message: str, *, refused: bool = True) -> None:
        super().__init__(message)
        self.refused = refused


class LoginError(Exception):
    """A login could not be started or finished; the message says why, for the person logging in."""
