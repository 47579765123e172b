"""A signed-in caller's identity, from its token's claims and `[sign_in]`'s group mapping."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import GatewayConfig, SignInSettings
from ..governance.identity import Identity, identity_for


def provider_groups(settings: SignInSettings, claims: dict[str, Any]) -> list[str]:
    """The caller's groups at the provider (`groups_claim`: a list of names, or one name)."""
    raw = claims.get(settings.groups_claim)
    if isinstance(raw, str):
        return [raw]
    return [g for g in raw if isinstance(g, str)] if isinstance(raw, list) else []


def identity_of(config: GatewayConfig, settings: SignInSettings, claims: dict[str, Any]) -> Identity:
    """Named by `name_claim` (else `sub`); each provider group listed under `[sign_in.groups]` adds its tool
    groups, the first one (in the config's order) that names a team sets the team, and any may make the caller
    an admin. A caller in no listed group is signed in but may see and call nothing (deny by default)."""
    subject = str(claims["sub"])
    named = claims.get(settings.name_claim)
    name = named if isinstance(named, str) and named else subject
    member_of = set(provider_groups(settings, claims))
    team: str | None = None
    groups: list[str] = []
    admin = False
    for group, entry in settings.groups.items():
        if group in member_of:
            team = team or entry.team
            groups += entry.groups
            admin = admin or entry.admin
    return dataclasses.replace(identity_for(config, name, team, groups, admin=admin), subject=subject)
