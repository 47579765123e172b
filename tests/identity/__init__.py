"""A real OpenID provider (the npm package `oidc-provider`) on loopback, for the tests of OAuth sign-in."""
