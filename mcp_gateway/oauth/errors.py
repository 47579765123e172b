"""What goes wrong with OAuth: the gateway's own logins to upstreams, and its callers' sign-in tokens (no secret
and no token is ever in a message)."""

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


class SignInUnavailable(Exception):
    """The provider could not be asked (metadata, keys or introspection): the request is refused with 503."""


class TokenRefused(Exception):
    """The token is not valid for this gateway; the message says why (never the token)."""
