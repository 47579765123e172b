"""A signed-in caller's identity from its claims: the group mapping, the name, deny by default."""

from __future__ import annotations

import tomllib

import pytest

from mcp_gateway import GatewayConfig, parse_config
from mcp_gateway.config import ConfigError
from mcp_gateway.governance.identity import identity_for
from mcp_gateway.oauth.claims import identity_of
from mcp_gateway.oauth.grants import owner_of

CONFIG = """
[servers.math]
command = "python"
[groups.reader]
tools = ["math.add"]
[groups.writer]
tools = ["math.*"]
[teams.platform]
groups = ["reader"]
[sign_in]
issuer = "https://login.example.com"
resource = "https://gw.example.com/mcp"
[sign_in.groups.eng]
team = "platform"
[sign_in.groups.ops]
groups = ["writer"]
[sign_in.groups.admins]
admin = true
"""


def config(text: str = CONFIG) -> GatewayConfig:
    return parse_config(tomllib.loads(text), source="gateway.toml", text=text)


def test_groups_map_to_team_tool_groups_and_admin() -> None:
    cfg = config()
    settings = cfg.sign_in
    assert settings is not None
    who = identity_of(cfg, settings, {"sub": "u1", "email": "ann@example.com", "groups": ["ops", "eng"]})
    assert (who.name, who.team, who.subject, who.admin) == ("ann@example.com", "platform", "u1", False)
    assert who.allows("math", "add") and who.allows("math", "mul")
    admin = identity_of(cfg, settings, {"sub": "u2", "groups": "admins"})
    assert admin.admin and admin.name == "u2"  # no email: named by `sub`


def test_a_caller_in_no_listed_group_may_call_nothing() -> None:
    cfg = config()
    settings = cfg.sign_in
    assert settings is not None
    who = identity_of(cfg, settings, {"sub": "u3", "email": "x@example.com", "groups": ["marketing"]})
    assert who.team is None and who.allow == () and not who.allows("math", "add")
    odd = identity_of(cfg, settings, {"sub": "u4", "groups": {"eng": True}})  # not a list: no groups
    assert odd.allow == ()


@pytest.mark.parametrize(("extra", "problem"), [
    ('[sign_in.groups.x]\nteam = "nope"', "sign_in.groups.x.team: unknown team 'nope'"),
    ('[sign_in.groups.x]\ngroups = ["nope"]', "sign_in.groups.x.groups: unknown group 'nope'"),
])
def test_the_mapping_must_name_existing_teams_and_groups(extra: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        config(CONFIG + extra)


def test_introspection_needs_a_client_and_symmetric_algorithms_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs client_id and client_secret"):
        config(CONFIG.replace('resource = "https://gw.example.com/mcp"',
                              'resource = "https://gw.example.com/mcp"\ntokens = "introspection"'))
    with pytest.raises(ConfigError, match="only public-key algorithms"):
        config(CONFIG.replace('resource = "https://gw.example.com/mcp"',
                              'resource = "https://gw.example.com/mcp"\nalgorithms = ["HS256"]'))


def test_a_signed_in_user_logs_in_to_upstreams_as_their_subject_a_key_as_its_name() -> None:
    cfg = config()
    settings = cfg.sign_in
    assert settings is not None
    user = identity_of(cfg, settings, {"sub": "u1", "email": "ci@example.com"})
    assert owner_of(user) == "user:u1"
    assert owner_of(identity_for(cfg, "ci@example.com", None, [])) == "key:ci@example.com"  # never the user's
