"""Properties over random arrivals, shifts, pauses and caps: nobody ineligible is ever chosen; round-robin
is even among always-on users; weighted stays within 1 of n·wᵢ/Σw for a fixed set and within 2 of its
expected count under churn; least-loaded picks a minimum; every decision re-derives from its record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from widget_server.distribution.decisions import rederive
from widget_server.distribution.engine import MemberView, apply_outcome, decide
from widget_server.distribution.shifts import (
    ShiftSpec,
    StatusView,
    effective_status,
    in_window,
    scheduled_interval,
)
from widget_server.models import DistributionDecision

STATUSES = ("on_shift", "paused", "off", "absent")


@st.composite
def arrivals(draw, strategy: str):  # type: ignore[no-untyped-def]
    n = draw(st.integers(2, 6))
    weights = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    caps = draw(st.lists(st.one_of(st.none(), st.integers(1, 5)), min_size=n, max_size=n))
    steps = draw(
        st.lists(
            st.tuples(
                st.lists(st.sampled_from(STATUSES), min_size=n, max_size=n),
                st.booleans(),  # inside the window
                st.lists(st.integers(0, 6), min_size=n, max_size=n),  # open load
            ),
            min_size=1,
            max_size=60,
        )
    )
    return strategy, weights, caps, steps


def _run(strategy, weights, caps, steps, record=None):  # type: ignore[no-untyped-def]
    state: dict = {}
    for seq, (statuses, window_open, loads) in enumerate(steps, start=1):
        members = [
            MemberView(uid, weights[uid], statuses[uid], load=loads[uid], max_open=caps[uid])
            for uid in range(len(weights))
        ]
        outcome = decide(strategy, members, state, window_open=window_open, seed=seq * 7919)
        if record is not None:
            record(members, state, outcome, window_open, seq)
        state = apply_outcome(state, outcome, seq, "2026-11-23")
    return state


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["round_robin", "weighted", "least_loaded", "random", "priority_order"]).flatmap(arrivals)
)
def test_nobody_ineligible_is_chosen_and_every_decision_rederives(case):
    strategy, weights, caps, steps = case

    def check(members, state, outcome, window_open, seq):  # type: ignore[no-untyped-def]
        if outcome.chosen is None:
            assert not window_open or all(
                m.status != "on_shift" or (m.max_open is not None and m.load >= m.max_open) for m in members
            )
            return
        chosen = members[outcome.chosen]
        assert window_open and chosen.status == "on_shift"
        assert chosen.max_open is None or chosen.load < chosen.max_open
        if strategy == "least_loaded":
            eligible = [
                m.load
                for m in members
                if m.status == "on_shift" and (m.max_open is None or m.load < m.max_open)
            ]
            assert chosen.load == min(eligible)
        decision = DistributionDecision(
            strategy=strategy, chosen_user_id=outcome.chosen, reason=outcome.reason,
            record={"candidates": outcome.candidates, "window_open": window_open, "seed": seq * 7919,
                    "state_before": {"last": state.get("last"), "idle": state.get("idle") or {}}},
        )  # fmt: skip
        assert rederive(decision) == (outcome.chosen, outcome.reason)

    _run(strategy, weights, caps, steps, check)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 6).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.lists(st.sampled_from(STATUSES), min_size=n, max_size=n), min_size=1, max_size=80))))  # fmt: skip
def test_round_robin_is_even_among_always_on_users(case):
    n, steps = case
    always = [0, 1]  # two users are on shift throughout; the rest come and go
    chosen: list[int] = []

    def record(members, state, outcome, window_open, seq):  # type: ignore[no-untyped-def]
        if outcome.chosen is not None:
            chosen.append(outcome.chosen)

    fixed = [
        (["on_shift" if u in always else s for u, s in enumerate(statuses)], True, [0] * n)
        for statuses in steps
    ]
    _run("round_robin", [1] * n, [None] * n, fixed, record)
    counts = [chosen.count(u) for u in always]
    assert max(counts) - min(counts) <= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=2, max_size=7), st.integers(1, 150))
def test_weighted_fixed_set_within_one_at_every_prefix(weights, leads):
    total = sum(weights)
    assigned = [0] * len(weights)

    def record(members, state, outcome, window_open, seq):  # type: ignore[no-untyped-def]
        assigned[outcome.chosen] += 1
        for uid, w in enumerate(weights):
            assert abs(assigned[uid] - seq * w / total) <= 1 + 1e-9

    steps = [(["on_shift"] * len(weights), True, [0] * len(weights))] * leads
    _run("weighted", weights, [None] * len(weights), steps, record)


@settings(max_examples=150, deadline=None)
@given(arrivals("weighted"))
def test_weighted_under_churn_within_two_of_expected(case):
    _strategy, weights, _caps, steps = case
    no_caps = [None] * len(weights)
    state = _run("weighted", weights, no_caps, steps)
    for uid in range(len(weights)):
        expected = (state.get("expected") or {}).get(str(uid), 0.0)
        assigned = (state.get("assigned") or {}).get(str(uid), 0)
        assert abs(assigned - expected) <= 2 + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    st.sampled_from(["Europe/Moscow", "Europe/Berlin", "America/New_York", "Asia/Novosibirsk"]),
    st.integers(0, 23),
    st.integers(1, 23),
)
def test_weekly_night_shift_interval_is_wall_clock_exact(at, tz, start_hour, length):
    end_hour = (start_hour + length) % 24
    spec = {"days": [1, 2, 3, 4, 5, 6, 7], "start": f"{start_hour:02d}:00", "end": f"{end_hour:02d}:00",
            "timezone": tz}  # fmt: skip
    interval = scheduled_interval([ShiftSpec("weekly", spec)], at, tz)
    from zoneinfo import ZoneInfo

    local = at.astimezone(ZoneInfo(tz))
    inside = (local.hour - start_hour) % 24 < length
    if interval is not None:
        begin, end = interval
        assert begin <= at < end
        # Lengths differ from `length` hours only by a clock change inside the shift.
        assert abs((end - begin) - timedelta(hours=length)) <= timedelta(hours=1)
    # Away from clock changes, being inside the hours on the wall clock is being on shift.
    if (
        local.utcoffset()
        == (local - timedelta(hours=24)).astimezone(ZoneInfo(tz)).utcoffset()
        == (local + timedelta(hours=24)).astimezone(ZoneInfo(tz)).utcoffset()
    ):
        assert (interval is not None) == inside
    status = effective_status("schedule", [ShiftSpec("weekly", spec)], StatusView(), at, default_tz=tz)
    assert status == ("on_shift" if interval else "off")


def test_night_shift_across_the_autumn_clock_change_lasts_one_hour_more():
    spec = {"days": [6], "start": "22:00", "end": "06:00"}  # Berlin, Saturday 24 Oct 2026 → Sunday
    at = datetime(2026, 10, 25, 3, 30, tzinfo=UTC)
    begin, end = scheduled_interval([ShiftSpec("weekly", spec)], at, "Europe/Berlin")  # type: ignore[misc]
    assert (begin, end) == (
        datetime(2026, 10, 24, 20, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 5, 0, tzinfo=UTC),
    )


def test_cyclic_two_on_two_off_from_anchor_and_window_across_midnight():
    spec = {"on_days": 2, "off_days": 2, "anchor": "2026-11-01", "start": "08:00", "end": "20:00"}
    shift = [ShiftSpec("cyclic", spec)]
    days_on = [
        d for d in range(1, 9)
        if scheduled_interval(shift, datetime(2026, 11, d, 9, 0, tzinfo=UTC), "Europe/Moscow")
    ]  # fmt: skip
    assert days_on == [1, 2, 5, 6]
    window = {"days": [5], "from": "21:00", "to": "03:00"}  # Friday night
    assert in_window(window, datetime(2026, 11, 27, 22, 0, tzinfo=UTC), "Europe/Moscow")  # Sat 01:00 MSK
    assert not in_window(window, datetime(2026, 11, 28, 22, 0, tzinfo=UTC), "Europe/Moscow")


def test_pause_auto_resumes_and_silence_ends_a_manual_shift():
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    paused = StatusView(
        "paused", at - timedelta(minutes=20), at - timedelta(minutes=5), at - timedelta(minutes=20)
    )
    assert effective_status("manual", [], paused, at, default_tz="UTC") == "on_shift"
    silent = StatusView("on_shift", at - timedelta(minutes=45), None, at - timedelta(minutes=31))
    assert effective_status("manual", [], silent, at, default_tz="UTC") == "off"
    absent = [ShiftSpec("absence", {}, at - timedelta(days=1), at + timedelta(days=6))]
    assert (
        effective_status("manual", absent, StatusView("on_shift", at, None, at), at, default_tz="UTC")
        == "absent"
    )
