"""The negotiation's steps as pure functions: no sockets, no database, no real time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.negotiation import machine
from aggregator.negotiation.home_steps import (
    RoundClosedError,
    accept_bid,
    ack_award,
    catch_up,
    drop_home,
    opt_out,
)
from aggregator.negotiation.model import (
    Env,
    HomeView,
    InvalidTransitionError,
    NegotiationSettings,
    StepKind,
    StepResult,
)
from aggregator.negotiation.state import EventState
from aggregator.records import (
    AwardStatus,
    BidRecord,
    EventRecord,
    EventStatus,
    HomeRecord,
    RoundRecord,
    RoundStatus,
)
from aggregator.store import HomeCurtailed, Insert, OfferRecord, OptOutRecord, Update, Upsert
from jeisson.common.protocol import (
    Award,
    AwardAck,
    Bid,
    BidStep,
    Cancel,
    ErrorCode,
    EventEnd,
    EventKind,
    Load,
    LoadKind,
    Offer,
    OptOut,
    OptOutReason,
    ProtocolError,
)

T0 = datetime(2026, 7, 1, 17, 0, tzinfo=UTC)
SETTINGS = NegotiationSettings(
    ack_timeout_s=15, renegotiation_window_s=10, offer_lead_s=0.1, offer_lead_per_home_s=0.001
)


def home(home_id: str, *, participating: bool = True) -> HomeView:
    loads = (
        Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=3.0),
        Load(load_id="ev", name="EV", kind=LoadKind.EV_CHARGER, rated_kw=7.0),
    )
    record = HomeRecord(
        home_id=home_id, name=home_id, created_at=T0, loads=loads, participating=participating
    )
    return HomeView.of(record)


HOMES = {view.home_id: view for view in (home("a"), home("b"), home("c"))}


def env(seconds: float = 0.0, homes: dict[str, HomeView] | None = None) -> Env:
    return Env(T0 + timedelta(seconds=seconds), SETTINGS, HOMES if homes is None else homes)


def event(kind: EventKind = EventKind.MARKET, target_kw: float = 5.0) -> EventRecord:
    return EventRecord(
        event_id="evt_1",
        name="peak",
        kind=kind,
        status=EventStatus.DRAFT,
        target_kw=target_kw,
        price_cap=0.4,
        start=T0 + timedelta(minutes=5),
        end=T0 + timedelta(minutes=65),
        bid_window_s=30,
        restore_stagger_s=60,
        currency="EUR",
        created_at=T0,
    )


def bid(home_id: str, price: float, *loads: str, round_number: int = 1) -> Bid:
    return Bid(
        id=f"bid-{home_id}-{round_number}",
        reply_to=f"offer-evt_1-{round_number}",
        event_id="evt_1",
        round=round_number,
        steps=[BidStep(kw=3.0, price=price, loads=list(loads or ("wh",)))],
    )


def created(homes: dict[str, HomeView] | None = None) -> StepResult:
    return machine.create(event(), env(homes=homes))


def with_bids(*bids: tuple[str, float]) -> EventState:
    state = created().state
    for home_id, price in bids:
        state = accept_bid(state, home_id, bid(home_id, price), env(1)).state
    return state


def cleared(*bids: tuple[str, float]) -> StepResult:
    result = machine.due_step(with_bids(*bids), env(40))
    assert result is not None
    assert result.kind is StepKind.CLEAR
    return result


def award_of(state: EventState, home_id: str) -> Award:
    (record,) = state.awards_of(home_id)
    return Award(
        id=record.award_id,
        event_id="evt_1",
        award_id=record.award_id,
        round=record.round,
        kind=EventKind.MARKET,
        loads=list(record.loads),
        kw=record.kw,
        price=record.price,
        window_start=T0,
        window_end=T0 + timedelta(hours=1),
        restore_stagger_s=60,
        currency="EUR",
    )


def acked(state: EventState, home_id: str, seconds: float = 41) -> EventState:
    award = award_of(state, home_id)
    message = AwardAck(reply_to=award.id, event_id="evt_1", award_id=award.award_id)
    return ack_award(state, home_id, message, env(seconds)).state


# --- creating an event ------------------------------------------------------------------------


def test_a_market_event_is_stored_with_its_first_round_and_offers_in_one_step() -> None:
    homes = {**HOMES, "away": home("away", participating=False)}
    result = machine.create(event(), env(homes=homes))

    assert result.state.record.status is EventStatus.NEGOTIATING
    assert result.state.record.current_round == 1
    inserted = [change.row for change in result.changes if isinstance(change, Insert)]
    assert inserted[0] == result.state.record  # the event itself, inserted, not updated
    assert isinstance(inserted[1], RoundRecord)
    assert {row.home_id for row in inserted if isinstance(row, OfferRecord)} == {"a", "b", "c"}
    (send,) = result.sends
    assert set(send.home_ids) == {"a", "b", "c"}
    assert isinstance(send.message, Offer)


def test_the_bid_window_starts_once_the_offers_are_out() -> None:
    result = created()
    record = result.state.rounds[1]
    lead = SETTINGS.offer_lead(3)
    assert record.deadline == T0 + timedelta(seconds=lead + 30)
    assert isinstance(result.sends[0].message, Offer)
    assert result.sends[0].message.bid_deadline == record.deadline


def test_a_direct_event_awards_every_eligible_home_its_target_needs() -> None:
    result = machine.create(event(EventKind.DIRECT, target_kw=25.0), env())

    assert result.state.record.status is EventStatus.COMMITTED
    assert {award.home_id for award in result.state.awards.values()} == {"a", "b", "c"}
    assert all(isinstance(send.message, Award) for send in result.sends)
    assert all(send.message.kw == pytest.approx(10.0) for send in result.sends)  # type: ignore[union-attr]
    assert len(result.state.rounds) == 0


def test_a_direct_event_awards_only_enough_homes_least_recently_curtailed_first() -> None:
    homes = {
        "a": replace(home("a"), last_curtailed_at=T0 - timedelta(days=1)),
        "b": home("b"),  # never curtailed: first
        "c": replace(home("c"), last_curtailed_at=T0 - timedelta(days=2)),
    }
    result = machine.create(event(EventKind.DIRECT, target_kw=15.0), env(homes=homes))

    assert {award.home_id for award in result.state.awards.values()} == {"b", "c"}
    assert result.state.shortfall_kw == 0.0


def direct_ack(
    state: EventState, home_id: str, *, accepted: bool = True, **fields: object
) -> AwardAck:
    (record,) = state.awards_of(home_id)
    return AwardAck(
        reply_to=record.award_id,
        event_id="evt_1",
        award_id=record.award_id,
        accepted=accepted,
        **fields,  # type: ignore[arg-type]
    )


def test_a_direct_event_awards_another_home_when_one_declines() -> None:
    state = machine.create(event(EventKind.DIRECT, target_kw=5.0), env()).state
    (first,) = state.awards_by_home.keys()
    declined = ack_award(state, first, direct_ack(state, first, accepted=False), env(1)).state

    step = machine.due_step(declined, env(2))

    assert step is not None
    assert step.kind is StepKind.DISPATCH
    # None of them curtailed yet: the next by id (the rotation's tie-break).
    assert [send.home_ids for send in step.sends] == [(min(set(HOMES) - {first}),)]


def test_a_direct_ack_commits_at_most_the_rated_kw_of_the_homes_own_curtailable_loads() -> None:
    state = machine.create(event(EventKind.DIRECT, target_kw=5.0), env()).state
    (home_id,) = state.awards_by_home.keys()
    claim = direct_ack(state, home_id, loads=["wh", "wh", "someone-elses"], kw=9_999.0)

    acked_state = ack_award(state, home_id, claim, env(1)).state

    (award,) = acked_state.awards_of(home_id)
    assert award.kw == pytest.approx(3.0)
    assert award.load_kw == {"wh": pytest.approx(3.0)}
    assert acked_state.committed_kw == pytest.approx(3.0)


# --- bids -------------------------------------------------------------------------------------


def test_a_bid_is_a_new_state_and_one_upsert_the_old_state_is_untouched() -> None:
    before = created().state

    result = accept_bid(before, "a", bid("a", 0.1), env(1))

    assert result.changes == (Upsert(result.state.open_bids["a"]),)
    assert "a" in result.state.open_bids
    assert "a" not in before.open_bids  # a failed commit keeps ``before``: nothing to undo


def test_a_repeated_bid_writes_nothing_again() -> None:
    state = with_bids(("a", 0.1))
    again = accept_bid(state, "a", bid("a", 0.1), env(2))
    assert again.changes == ()
    assert again.state is state


def test_a_bid_after_the_deadline_is_refused_even_before_clearing() -> None:
    state = created().state
    deadline = state.rounds[1].deadline
    late = env((deadline - T0).total_seconds() + 0.001)

    with pytest.raises(ProtocolError) as refused:
        accept_bid(state, "a", bid("a", 0.1), late)
    assert refused.value.code is ErrorCode.DEADLINE_PASSED


@pytest.mark.parametrize(
    ("home_id", "message", "code"),
    [
        ("stranger", bid("stranger", 0.1), ErrorCode.INVALID_STATE),
        ("a", bid("a", 0.1, "sauna"), ErrorCode.UNKNOWN_LOAD),
        ("a", bid("a", 0.1, round_number=2), ErrorCode.DEADLINE_PASSED),
        (
            "a",  # 9,999 kW from a 3 kW water heater
            bid("a", 0.1).model_copy(
                update={"steps": [BidStep(kw=9_999.0, price=0.1, loads=["wh"])]}
            ),
            ErrorCode.INVALID_MESSAGE,
        ),
    ],
)
def test_bids_that_cannot_stand_are_refused(home_id: str, message: Bid, code: ErrorCode) -> None:
    state = created().state
    with pytest.raises(ProtocolError) as refused:
        accept_bid(state, home_id, message, env(1))
    assert refused.value.code is code


def test_a_bid_for_a_closed_round_asks_whether_it_was_stored() -> None:
    state = cleared(("a", 0.1)).state
    with pytest.raises(RoundClosedError):
        accept_bid(state, "a", bid("a", 0.1), env(50))


# --- clearing and awards ----------------------------------------------------------------------


def test_the_round_clears_as_soon_as_every_offered_home_has_bid() -> None:
    state = with_bids(("a", 0.1), ("b", 0.2))
    assert machine.due_step(state, env(2)) is None
    assert machine.next_due(state, T0 + timedelta(seconds=2)) == state.rounds[1].deadline

    state = accept_bid(state, "c", bid("c", 0.3), env(2)).state
    result = machine.due_step(state, env(2))

    assert result is not None
    assert result.kind is StepKind.CLEAR


def test_clearing_awards_the_cheapest_in_one_step_with_the_event_committed() -> None:
    result = cleared(("a", 0.1), ("b", 0.2), ("c", 0.3))
    state = result.state

    assert {award.home_id for award in state.awards.values()} == {"a", "b"}
    assert all(award.price == pytest.approx(0.2) for award in state.awards.values())
    assert state.record.status is EventStatus.COMMITTED
    assert state.rounds[1].status is RoundStatus.CLEARED
    assert len(state.open_bids) == 0
    kinds = [type(change).__name__ + ":" + type(change.row).__name__ for change in result.changes]
    assert kinds == [
        "Update:RoundRecord",
        "Insert:AwardRecord",
        "Insert:AwardRecord",
        "Update:EventRecord",
    ]
    assert sorted(next(iter(send.home_ids)) for send in result.sends) == ["a", "b"]


def test_an_acknowledged_award_counts_and_rotates_the_home() -> None:
    state = cleared(("a", 0.1), ("b", 0.2)).state
    award = award_of(state, "a")
    message = AwardAck(reply_to=award.id, event_id="evt_1", award_id=award.award_id)

    result = ack_award(state, "a", message, env(41))

    assert result.state.awards[award.award_id].status is AwardStatus.ACKED
    assert result.state.committed_kw == pytest.approx(3.0)
    assert Update(HomeCurtailed("a", T0 + timedelta(seconds=41))) in result.changes
    assert ack_award(result.state, "a", message, env(42)).changes == ()  # a repeat


def test_an_ack_after_the_ack_deadline_is_refused() -> None:
    state = cleared(("a", 0.1)).state
    award = award_of(state, "a")
    message = AwardAck(reply_to=award.id, event_id="evt_1", award_id=award.award_id)
    with pytest.raises(ProtocolError) as refused:
        ack_award(state, "a", message, env(40 + 15.5))
    assert refused.value.code is ErrorCode.INVALID_STATE


def test_unacknowledged_awards_expire_and_the_shortfall_is_renegotiated() -> None:
    state = cleared(("a", 0.1), ("b", 0.2)).state
    state = acked(state, "b")

    expired = machine.due_step(state, env(40 + 16))
    assert expired is not None
    assert expired.kind is StepKind.EXPIRE
    assert [award.status for award in expired.state.awards_of("a")] == [AwardStatus.EXPIRED]
    assert expired.state.needs_round

    active = machine.due_step(expired.state, env(5 * 60))
    assert active is not None
    assert active.kind is StepKind.ACTIVATE
    second = machine.due_step(active.state, env(5 * 60))
    assert second is not None
    assert second.kind is StepKind.OPEN_ROUND
    round_two = second.state.rounds[2]
    assert round_two.target_kw == pytest.approx(2.0)  # 5 kW target, 3 kW committed by "b"
    # Everyone still has a free load; "b" holds its water heater, "a" let its award expire.
    assert set(second.state.offered_in(2)) == {"a", "b", "c"}
    with pytest.raises(ProtocolError) as refused:
        accept_bid(second.state, "b", bid("b", 0.1, round_number=2), env(5 * 60))
    assert refused.value.code is ErrorCode.INVALID_STATE
    taken = accept_bid(second.state, "b", bid("b", 0.1, "ev", round_number=2), env(5 * 60))
    assert "b" in taken.state.open_bids


# --- opt-outs, drops, reconnects --------------------------------------------------------------


def test_an_opt_out_releases_the_award_once() -> None:
    state = acked(cleared(("a", 0.1), ("b", 0.2)).state, "a")
    message = OptOut(event_id="evt_1", reason=OptOutReason.USER)

    result = opt_out(state, "a", message, env(100))

    assert [award.status for award in result.state.awards_of("a")] == [AwardStatus.OPTED_OUT]
    assert any(
        isinstance(change, Insert) and isinstance(change.row, OptOutRecord)
        for change in result.changes
    )
    assert result.state.needs_round
    assert opt_out(result.state, "a", message, env(101)).changes == ()


def test_a_home_that_drops_off_loses_its_acknowledged_award() -> None:
    state = acked(cleared(("a", 0.1)).state, "a")
    result = drop_home(state, "a", env(200))
    assert [award.status for award in result.state.awards_of("a")] == [AwardStatus.LOST]
    assert result.state.needs_round


def test_a_home_connecting_during_bidding_is_offered_the_round() -> None:
    state = created(homes={"a": HOMES["a"]}).state
    late = home("late")

    result = catch_up(state, late, env(5, {"a": HOMES["a"], "late": late}))

    assert "late" in result.state.offered_in(1)
    assert result.changes == (Insert(OfferRecord("evt_1", 1, "late"), if_absent=True),)
    assert isinstance(result.sends[0].message, Offer)
    too_late = env((state.rounds[1].deadline - T0).total_seconds() - 0.5)
    assert catch_up(state, late, too_late).sends == ()


def test_a_reconnecting_home_gets_its_unacknowledged_award_again() -> None:
    state = cleared(("a", 0.1)).state
    result = catch_up(state, HOMES["a"], env(45))
    assert result.changes == ()
    assert [type(send.message) for send in result.sends] == [Award]


def test_a_home_back_still_holding_its_lost_award_counts_again_without_released_loads() -> None:
    state = acked(cleared(("a", 0.1)).state, "a")
    lost = drop_home(state, "a", env(200)).state
    (award,) = lost.awards_of("a")
    assert lost.committed_kw == 0.0

    result = catch_up(lost, HOMES["a"], env(210), {award.award_id: frozenset()})

    (back,) = result.state.awards_of("a")
    assert back.status is AwardStatus.ACKED
    assert result.state.committed_kw == award.kw
    assert result.changes == (Update(back),)
    assert "still holding" in result.note
    assert lost.awards_of("a")[0].status is AwardStatus.LOST  # the old state is untouched


def test_a_home_back_without_its_lost_award_stays_lost() -> None:
    lost = drop_home(acked(cleared(("a", 0.1)).state, "a"), "a", env(200)).state
    (award,) = lost.awards_of("a")
    assert catch_up(lost, HOMES["a"], env(210), {}).changes == ()
    released = catch_up(lost, HOMES["a"], env(210), {award.award_id: frozenset({"other"})})
    assert released.state.awards_of("a")[0].status is AwardStatus.LOST


# --- the end ----------------------------------------------------------------------------------


def test_cancel_abandons_the_round_withdraws_unacknowledged_awards_and_tells_everyone() -> None:
    state = cleared(("a", 0.1), ("b", 0.2)).state
    state = acked(state, "b")

    result = machine.cancel(state, "grid recovered", env(50))

    assert result.state.record.status is EventStatus.CANCELLED
    assert result.state.record.cancel_reason == "grid recovered"
    statuses = {award.home_id: award.status for award in result.state.awards.values()}
    assert statuses == {"a": AwardStatus.CANCELLED, "b": AwardStatus.ACKED}
    (send,) = result.sends
    assert isinstance(send.message, Cancel)
    assert set(send.home_ids) == {"a", "b"}
    with pytest.raises(InvalidTransitionError):
        machine.cancel(result.state, "again", env(51))


def test_cancel_during_bidding_tells_the_offered_homes() -> None:
    result = machine.cancel(created().state, "", env(5))
    assert result.state.rounds[1].status is RoundStatus.ABANDONED
    assert set(result.sends[0].home_ids) == {"a", "b", "c"}


def test_the_event_completes_at_its_end() -> None:
    state = acked(cleared(("a", 0.1)).state, "a")
    end = (state.record.end - T0).total_seconds()
    assert machine.next_due(state, T0 + timedelta(seconds=end - 1)) <= state.record.end

    result = machine.due_step(state, env(end))

    assert result is not None
    assert result.kind is StepKind.COMPLETE
    assert result.state.record.status is EventStatus.COMPLETED
    assert isinstance(result.sends[0].message, EventEnd)
    assert machine.due_step(result.state, env(end + 1)) is None


def test_restore_leaves_out_the_bids_of_homes_that_opted_out() -> None:
    state = with_bids(("a", 0.1), ("b", 0.2))
    bids: list[BidRecord] = list(state.open_bids.values())
    record = replace(state.record, status=EventStatus.NEGOTIATING)
    resumed = machine.restore(
        record,
        rounds=state.rounds.values(),
        offered={1: {"a", "b", "c"}},
        open_bids=bids,
        awards=[],
        opted_out=["b"],
        unacked_deadline=T0 + timedelta(minutes=1),
    )
    assert set(resumed.open_bids) == {"a"}
    assert resumed.opted_out == {"b"}
