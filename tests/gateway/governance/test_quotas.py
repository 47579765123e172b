"""Rate limits and budgets, on an injected clock (seconds since the epoch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mcp_gateway import GatewayConfig, parse_config
from mcp_gateway.errors import QuotaExceeded
from mcp_gateway.governance.identity import Identity
from mcp_gateway.governance.quotas import Quota
from mcp_gateway.storage import Budget, Storage, Window
from tests.stores import BACKENDS, open_store

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
async def counters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with open_store(request.param, tmp_path) as store:
        yield store


async def spent(counters: Storage, key: str) -> float:
    """What budget `key` has spent (a charge no budget allows answers with it, and books nothing)."""
    refusal = await counters.charge([Budget(key, 0.0)], 1e18)
    assert refusal is not None
    return refusal[1]


class Clock:
    def __init__(self, at: float) -> None:
        self.t = at

    def __call__(self) -> float:
        return self.t


def at(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


NOON = at(2024, 5, 15, 12, 0, 0)
KEY = Identity("k", team="t")


def config(key: dict[str, Any] | None = None, team: dict[str, Any] | None = None, **extra: Any) -> GatewayConfig:
    return parse_config({
        "groups": {"all": {"tools": ["*"]}},
        "teams": {"t": {"groups": ["all"], **(team or {})}},
        "keys": {"k": {"key": "quota-key-0123456789", "team": "t", **(key or {})},
                 "k2": {"key": "quota-key-9876543210", "team": "t"}},
        **extra,
    })


async def refused(quota: Quota, identity: Identity, kind: str = "calls") -> str:
    with pytest.raises(QuotaExceeded) as info:
        await quota.check_rate(identity, kind)
    return str(info.value)


# ---- rate limits -------------------------------------------------------------------------------


async def test_no_quotas_means_no_limit(counters: Storage) -> None:
    quota = Quota(config(), counters, now=Clock(NOON))
    for _ in range(1000):
        await quota.check_rate(KEY, "calls")
        await quota.charge(KEY, 5.0)


async def test_calls_per_minute_per_key(counters: Storage) -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"calls_per_minute": 3}), counters, now=clock)
    for _ in range(3):
        await quota.check_rate(KEY, "calls")
    assert await refused(quota, KEY) == (
        "rate limit: key k allows 3 calls per minute (keys.k.calls_per_minute); retry in 60 s"
    )
    await quota.check_rate(Identity("k2", team="t"), "calls")  # another key of the team is not limited
    await quota.check_rate(KEY, "scripts")  # scripts are counted apart


async def test_calls_per_minute_per_team_counts_all_its_keys(counters: Storage) -> None:
    quota = Quota(config(team={"calls_per_minute": 2}), counters, now=Clock(NOON))
    await quota.check_rate(KEY, "calls")
    await quota.check_rate(Identity("k2", team="t"), "calls")
    assert await refused(quota, Identity("k2", team="t")) == (
        "rate limit: team t allows 2 calls per minute (teams.t.calls_per_minute); retry in 60 s"
    )
    assert "teams.t.calls_per_minute" in await refused(quota, KEY)
    await quota.check_rate(Identity("outsider"), "calls")  # not in the team, not a config key: unlimited


async def test_scripts_per_minute(counters: Storage) -> None:
    quota = Quota(config(key={"scripts_per_minute": 1}), counters, now=Clock(NOON))
    await quota.check_rate(KEY, "scripts")
    assert "allows 1 scripts per minute (keys.k.scripts_per_minute)" in await refused(quota, KEY, "scripts")
    await quota.check_rate(KEY, "calls")


async def test_the_window_slides_and_retry_names_the_seconds_left(counters: Storage) -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"calls_per_minute": 2}), counters, now=clock)
    await quota.check_rate(KEY, "calls")  # at 0
    clock.t += 20
    await quota.check_rate(KEY, "calls")  # at 20
    clock.t += 10.5  # 30.5: both still in the window; the first leaves it at 60
    assert (await refused(quota, KEY)).endswith("retry in 30 s")  # ceil(29.5)
    clock.t = NOON + 59.9
    assert (await refused(quota, KEY)).endswith("retry in 1 s")
    clock.t = NOON + 60  # the first call's minute is over
    await quota.check_rate(KEY, "calls")  # at 60
    assert (await refused(quota, KEY)).endswith("retry in 20 s")  # the call at 20 leaves at 80
    clock.t = NOON + 200
    await quota.check_rate(KEY, "calls")
    await quota.check_rate(KEY, "calls")


async def test_a_refused_call_does_not_count_against_the_same_limit(counters: Storage) -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"calls_per_minute": 1}), counters, now=clock)
    await quota.check_rate(KEY, "calls")
    for second in range(1, 60):
        clock.t = NOON + second
        await refused(quota, KEY)
    clock.t = NOON + 60
    await quota.check_rate(KEY, "calls")


async def test_a_call_refused_by_the_team_does_not_count_against_the_key(counters: Storage) -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"calls_per_minute": 1}, team={"calls_per_minute": 1}), counters, now=clock)
    await quota.check_rate(Identity("k2", team="t"), "calls")  # uses up the team's minute
    clock.t = NOON + 1
    assert "teams.t" in await refused(quota, KEY)  # refused: k has made no call
    clock.t = NOON + 30
    assert "teams.t" in await refused(quota, KEY)
    clock.t = NOON + 60.5  # the team's minute is over, and k has not called yet
    await quota.check_rate(KEY, "calls")


async def test_counters_count_per_key_and_report_the_wait(counters: Storage) -> None:
    a, b = Window("a", 2, 60.0), Window("b", 2, 60.0)
    assert await counters.take([a], 0.0) is None
    assert await counters.take([a], 10.0) is None
    assert await counters.take([a], 15.0) == (a, 45.0)
    assert await counters.take([a], 15.0) == (a, 45.0), "a refused event is not counted"
    assert await counters.take([b], 15.0) is None
    assert await counters.take([b, a], 16.0) == (a, 44.0)
    assert await counters.take([b], 17.0) is None, "b was not counted when a refused"
    assert await counters.take([a], 60.0) is None


async def test_counts_survive_a_restart(counters: Storage, tmp_path: Path) -> None:
    limit = Window("keys.k.calls", 1, 60.0)
    assert await counters.take([limit], NOON) is None
    await counters.charge([Budget("keys.k.2024-05-15", 5.0)], 4.0)
    await counters.close()  # the gateway stops; the next one opens the same store
    assert await counters.take([limit], NOON + 30) == (limit, 30.0)
    assert await spent(counters, "keys.k.2024-05-15") == 4.0


# ---- prices and budgets ------------------------------------------------------------------------

PRICES = {"search.*": {"price": 0.25}, "search.deep_*": {"price": 2.0}, "db.query": {"approval": "never"}}


async def test_price_is_the_highest_matching_rule(counters: Storage) -> None:
    quota = Quota(config(tools=PRICES), counters)
    assert quota.price("search", "web") == 0.25
    assert quota.price("search", "deep_research") == 2.0
    assert quota.price("db", "query") == 0.0
    assert quota.price("github", "get_issue") == 0.0


async def test_daily_budget_per_key(counters: Storage) -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"budget_per_day": 1.0}, tools=PRICES), counters, now=clock)
    for _ in range(4):
        await quota.charge(KEY, quota.price("search", "web"))
    with pytest.raises(QuotaExceeded) as info:
        await quota.charge(KEY, quota.price("search", "web"))
    assert str(info.value) == (
        "budget: key k has spent 1 of its daily budget 1 (keys.k.budget_per_day); resets at 2024-05-16 00:00 UTC"
    )
    await quota.charge(KEY, quota.price("db", "query"))  # free calls still pass
    await quota.charge(Identity("k2", team="t"), 5.0)  # another key has no budget


async def test_a_call_costing_more_than_what_is_left_is_refused(counters: Storage) -> None:
    quota = Quota(config(key={"budget_per_day": 3.0}), counters, now=Clock(NOON))
    await quota.charge(KEY, 2.0)
    with pytest.raises(QuotaExceeded, match="has spent 2 of its daily budget 3"):
        await quota.charge(KEY, 2.0)
    await quota.charge(KEY, 1.0)  # the refused call was not booked


async def test_rounding_does_not_refuse_a_call_that_exactly_fits(counters: Storage) -> None:
    quota = Quota(config(key={"budget_per_day": 0.3}), counters, now=Clock(NOON))
    for _ in range(3):
        await quota.charge(KEY, 0.1)  # 0.1 + 0.1 + 0.1 == 0.30000000000000004
    with pytest.raises(QuotaExceeded):
        await quota.charge(KEY, 0.1)


async def test_monthly_budget_per_team_is_shared_by_its_keys(counters: Storage) -> None:
    quota = Quota(config(team={"budget_per_month": 10.0}), counters, now=Clock(NOON))
    await quota.charge(KEY, 6.0)
    with pytest.raises(QuotaExceeded) as info:
        await quota.charge(Identity("k2", team="t"), 6.0)
    assert str(info.value) == (
        "budget: team t has spent 6 of its monthly budget 10 (teams.t.budget_per_month); "
        "resets at 2024-06-01 00:00 UTC"
    )
    await quota.charge(Identity("k2", team="t"), 4.0)


async def test_a_daily_budget_resets_at_utc_midnight(counters: Storage) -> None:
    clock = Clock(at(2024, 5, 15, 23, 59, 59))
    quota = Quota(config(key={"budget_per_day": 1.0}), counters, now=clock)
    await quota.charge(KEY, 1.0)
    with pytest.raises(QuotaExceeded, match="resets at 2024-05-16 00:00 UTC"):
        await quota.charge(KEY, 1.0)
    clock.t = at(2024, 5, 16, 0, 0, 0)
    await quota.charge(KEY, 1.0)
    with pytest.raises(QuotaExceeded, match="resets at 2024-05-17 00:00 UTC"):
        await quota.charge(KEY, 0.5)


async def test_a_monthly_budget_lasts_across_days_and_resets_on_the_first(counters: Storage) -> None:
    clock = Clock(at(2024, 1, 15, 12, 0, 0))
    quota = Quota(config(key={"budget_per_month": 2.0}), counters, now=clock)
    await quota.charge(KEY, 1.5)
    clock.t = at(2024, 1, 31, 23, 59, 59)
    with pytest.raises(QuotaExceeded) as info:
        await quota.charge(KEY, 1.0)
    assert str(info.value) == (
        "budget: key k has spent 1.5 of its monthly budget 2 (keys.k.budget_per_month); "
        "resets at 2024-02-01 00:00 UTC"
    )
    clock.t = at(2024, 2, 1, 0, 0, 1)
    await quota.charge(KEY, 2.0)


async def test_december_resets_in_january(counters: Storage) -> None:
    clock = Clock(at(2024, 12, 31, 23, 59, 59))
    quota = Quota(config(key={"budget_per_day": 5.0, "budget_per_month": 1.0}), counters, now=clock)
    await quota.charge(KEY, 1.0)
    with pytest.raises(QuotaExceeded) as info:
        await quota.charge(KEY, 1.0)
    assert str(info.value).endswith("(keys.k.budget_per_month); resets at 2025-01-01 00:00 UTC")
    clock.t = at(2025, 1, 1, 0, 0, 0)
    await quota.charge(KEY, 1.0)


async def test_nothing_is_booked_when_one_budget_refuses(counters: Storage) -> None:
    quota = Quota(config(key={"budget_per_day": 10.0, "budget_per_month": 100.0}, team={"budget_per_day": 3.0}),
                  counters, now=Clock(NOON))
    await quota.charge(KEY, 2.0)
    with pytest.raises(QuotaExceeded, match="team t has spent 2 of its daily budget 3"):
        await quota.charge(KEY, 2.0)
    assert await spent(counters, "keys.k.2024-05-15") == 2.0
    assert await spent(counters, "keys.k.2024-05") == 2.0
    assert await spent(counters, "teams.t.2024-05-15") == 2.0
    await quota.charge(KEY, 1.0)
    assert await spent(counters, "keys.k.2024-05-15") == 3.0


async def test_a_zero_budget_refuses_paid_calls_only(counters: Storage) -> None:
    quota = Quota(config(key={"budget_per_day": 0}), counters, now=Clock(NOON))
    await quota.charge(KEY, 0.0)
    with pytest.raises(QuotaExceeded, match="daily budget 0 "):
        await quota.charge(KEY, 0.01)
