"""Rate limits and budgets, on an injected clock (seconds since the epoch)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mcp_gateway import GatewayConfig, parse_config
from mcp_gateway.errors import QuotaExceeded
from mcp_gateway.governance.identity import Identity
from mcp_gateway.governance.quotas import MemoryCounters, Quota


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


def refused(quota: Quota, identity: Identity, kind: str = "calls") -> str:
    with pytest.raises(QuotaExceeded) as info:
        quota.check_rate(identity, kind)
    return str(info.value)


# ---- rate limits -------------------------------------------------------------------------------


def test_no_quotas_means_no_limit() -> None:
    quota = Quota(config(), now=Clock(NOON))
    for _ in range(1000):
        quota.check_rate(KEY, "calls")
        quota.charge(KEY, 5.0)


def test_calls_per_minute_per_key() -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"calls_per_minute": 3}), now=clock)
    for _ in range(3):
        quota.check_rate(KEY, "calls")
    assert refused(quota, KEY) == (
        "rate limit: key k allows 3 calls per minute (keys.k.calls_per_minute); retry in 60 s"
    )
    quota.check_rate(Identity("k2", team="t"), "calls")  # another key of the team is not limited
    quota.check_rate(KEY, "scripts")  # scripts are counted apart


def test_calls_per_minute_per_team_counts_all_its_keys() -> None:
    quota = Quota(config(team={"calls_per_minute": 2}), now=Clock(NOON))
    quota.check_rate(KEY, "calls")
    quota.check_rate(Identity("k2", team="t"), "calls")
    assert refused(quota, Identity("k2", team="t")) == (
        "rate limit: team t allows 2 calls per minute (teams.t.calls_per_minute); retry in 60 s"
    )
    assert "teams.t.calls_per_minute" in refused(quota, KEY)
    quota.check_rate(Identity("outsider"), "calls")  # not in the team, not a config key: unlimited


def test_scripts_per_minute() -> None:
    quota = Quota(config(key={"scripts_per_minute": 1}), now=Clock(NOON))
    quota.check_rate(KEY, "scripts")
    assert "allows 1 scripts per minute (keys.k.scripts_per_minute)" in refused(quota, KEY, "scripts")
    quota.check_rate(KEY, "calls")


def test_the_window_slides_and_retry_names_the_seconds_left() -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"calls_per_minute": 2}), now=clock)
    quota.check_rate(KEY, "calls")  # at 0
    clock.t += 20
    quota.check_rate(KEY, "calls")  # at 20
    clock.t += 10.5  # 30.5: both still in the window; the first leaves it at 60
    assert refused(quota, KEY).endswith("retry in 30 s")  # ceil(29.5)
    clock.t = NOON + 59.9
    assert refused(quota, KEY).endswith("retry in 1 s")
    clock.t = NOON + 60  # the first call's minute is over
    quota.check_rate(KEY, "calls")  # at 60
    assert refused(quota, KEY).endswith("retry in 20 s")  # the call at 20 leaves at 80
    clock.t = NOON + 200
    quota.check_rate(KEY, "calls")
    quota.check_rate(KEY, "calls")


def test_a_refused_call_does_not_count_against_the_same_limit() -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"calls_per_minute": 1}), now=clock)
    quota.check_rate(KEY, "calls")
    for second in range(1, 60):
        clock.t = NOON + second
        refused(quota, KEY)
    clock.t = NOON + 60
    quota.check_rate(KEY, "calls")


def test_a_call_refused_by_the_team_does_not_count_against_the_key() -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"calls_per_minute": 1}, team={"calls_per_minute": 1}), now=clock)
    quota.check_rate(Identity("k2", team="t"), "calls")  # uses up the team's minute
    clock.t = NOON + 1
    assert "teams.t" in refused(quota, KEY)  # refused: k has made no call
    clock.t = NOON + 30
    assert "teams.t" in refused(quota, KEY)
    clock.t = NOON + 60.5  # the team's minute is over, and k has not called yet
    quota.check_rate(KEY, "calls")


def test_counters_count_per_key_and_report_the_wait() -> None:
    counters = MemoryCounters()
    assert counters.wait("a", 60, 2, 0.0) is None
    counters.count("a", 0.0)
    assert counters.wait("a", 60, 2, 10.0) is None
    counters.count("a", 10.0)
    assert counters.wait("a", 60, 2, 15.0) == 45.0
    assert counters.wait("a", 60, 2, 15.0) == 45.0, "a refused event is not counted"
    assert counters.wait("b", 60, 2, 15.0) is None
    assert counters.wait("a", 60, 2, 60.0) is None


# ---- prices and budgets ------------------------------------------------------------------------

PRICES = {"search.*": {"price": 0.25}, "search.deep_*": {"price": 2.0}, "db.query": {"approval": "never"}}


def test_price_is_the_highest_matching_rule() -> None:
    quota = Quota(config(tools=PRICES))
    assert quota.price("search", "web") == 0.25
    assert quota.price("search", "deep_research") == 2.0
    assert quota.price("db", "query") == 0.0
    assert quota.price("github", "get_issue") == 0.0


def test_daily_budget_per_key() -> None:
    clock = Clock(NOON)
    quota = Quota(config(key={"budget_per_day": 1.0}, tools=PRICES), now=clock)
    for _ in range(4):
        quota.charge(KEY, quota.price("search", "web"))
    with pytest.raises(QuotaExceeded) as info:
        quota.charge(KEY, quota.price("search", "web"))
    assert str(info.value) == (
        "budget: key k has spent 1 of its daily budget 1 (keys.k.budget_per_day); resets at 2024-05-16 00:00 UTC"
    )
    quota.charge(KEY, quota.price("db", "query"))  # free calls still pass
    quota.charge(Identity("k2", team="t"), 5.0)  # another key has no budget


def test_a_call_costing_more_than_what_is_left_is_refused() -> None:
    quota = Quota(config(key={"budget_per_day": 3.0}), now=Clock(NOON))
    quota.charge(KEY, 2.0)
    with pytest.raises(QuotaExceeded, match="has spent 2 of its daily budget 3"):
        quota.charge(KEY, 2.0)
    quota.charge(KEY, 1.0)  # the refused call was not booked


def test_rounding_does_not_refuse_a_call_that_exactly_fits() -> None:
    quota = Quota(config(key={"budget_per_day": 0.3}), now=Clock(NOON))
    for _ in range(3):
        quota.charge(KEY, 0.1)  # 0.1 + 0.1 + 0.1 == 0.30000000000000004
    with pytest.raises(QuotaExceeded):
        quota.charge(KEY, 0.1)


def test_monthly_budget_per_team_is_shared_by_its_keys() -> None:
    quota = Quota(config(team={"budget_per_month": 10.0}), now=Clock(NOON))
    quota.charge(KEY, 6.0)
    with pytest.raises(QuotaExceeded) as info:
        quota.charge(Identity("k2", team="t"), 6.0)
    assert str(info.value) == (
        "budget: team t has spent 6 of its monthly budget 10 (teams.t.budget_per_month); "
        "resets at 2024-06-01 00:00 UTC"
    )
    quota.charge(Identity("k2", team="t"), 4.0)


def test_a_daily_budget_resets_at_utc_midnight() -> None:
    clock = Clock(at(2024, 5, 15, 23, 59, 59))
    quota = Quota(config(key={"budget_per_day": 1.0}), now=clock)
    quota.charge(KEY, 1.0)
    with pytest.raises(QuotaExceeded, match="resets at 2024-05-16 00:00 UTC"):
        quota.charge(KEY, 1.0)
    clock.t = at(2024, 5, 16, 0, 0, 0)
    quota.charge(KEY, 1.0)
    with pytest.raises(QuotaExceeded, match="resets at 2024-05-17 00:00 UTC"):
        quota.charge(KEY, 0.5)


def test_a_monthly_budget_lasts_across_days_and_resets_on_the_first() -> None:
    clock = Clock(at(2024, 1, 15, 12, 0, 0))
    quota = Quota(config(key={"budget_per_month": 2.0}), now=clock)
    quota.charge(KEY, 1.5)
    clock.t = at(2024, 1, 31, 23, 59, 59)
    with pytest.raises(QuotaExceeded) as info:
        quota.charge(KEY, 1.0)
    assert str(info.value) == (
        "budget: key k has spent 1.5 of its monthly budget 2 (keys.k.budget_per_month); "
        "resets at 2024-02-01 00:00 UTC"
    )
    clock.t = at(2024, 2, 1, 0, 0, 1)
    quota.charge(KEY, 2.0)


def test_december_resets_in_january() -> None:
    clock = Clock(at(2024, 12, 31, 23, 59, 59))
    quota = Quota(config(key={"budget_per_day": 5.0, "budget_per_month": 1.0}), now=clock)
    quota.charge(KEY, 1.0)
    with pytest.raises(QuotaExceeded) as info:
        quota.charge(KEY, 1.0)
    assert str(info.value).endswith("(keys.k.budget_per_month); resets at 2025-01-01 00:00 UTC")
    clock.t = at(2025, 1, 1, 0, 0, 0)
    quota.charge(KEY, 1.0)


def test_nothing_is_booked_when_one_budget_refuses() -> None:
    counters = MemoryCounters()
    quota = Quota(config(key={"budget_per_day": 10.0, "budget_per_month": 100.0}, team={"budget_per_day": 3.0}),
                  counters=counters, now=Clock(NOON))
    quota.charge(KEY, 2.0)
    with pytest.raises(QuotaExceeded, match="team t has spent 2 of its daily budget 3"):
        quota.charge(KEY, 2.0)
    assert counters.spent("keys.k.2024-05-15") == 2.0
    assert counters.spent("keys.k.2024-05") == 2.0
    assert counters.spent("teams.t.2024-05-15") == 2.0
    quota.charge(KEY, 1.0)
    assert counters.spent("keys.k.2024-05-15") == 3.0


def test_a_zero_budget_refuses_paid_calls_only() -> None:
    quota = Quota(config(key={"budget_per_day": 0}), now=Clock(NOON))
    quota.charge(KEY, 0.0)
    with pytest.raises(QuotaExceeded, match="daily budget 0 "):
        quota.charge(KEY, 0.01)
