"""OAuth 2.1 both ways: callers who sign in with the organisation's provider (`sign_in`), and later
upstreams reached with OAuth tokens. docs/identity.md."""

from .sign_in import SignIn, SignInUnavailable

__all__ = ["SignIn", "SignInUnavailable"]
