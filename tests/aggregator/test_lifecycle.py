"""End-to-end negotiation against a real aggregator on 127.0.0.1 with real home clients."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jeisson.common.protocol import (
    Award,
    Cancel,
    EventEnd,
    EventKind,
    Offer,
    OptOutReason,
    Sample,
    utc_now,
)
from tests.helpers import wait_for

from .common import HomeFactory, RunningServer, bids, event_status, first_round_only


async def test_market_event_clears_in_merit_order_at_uniform_price(
    server: RunningServer, make_home: HomeFactory
) -> None:
    cheap = await make_home(bids((3.0, 0.10, ["wh"])))
    middle = await make_home(bids((3.0, 0.20, ["wh"])))
    dear = await make_home(bids((3.0, 0.30, ["wh"])))
    event = await server.create_event(target_kw=5.0)

    await event_status(server, event["id"], "committed")
    detail = await server.event(event["id"])

    awarded = {award["home_id"]: award for award in detail["awards"]}
    assert set(awarded) == {cheap.home_id, middle.home_id}
    assert dear.home_id not in awarded
    assert detail["clearing_price"] == pytest.approx(0.20)
    assert all(award["price"] == pytest.approx(0.20) for award in awarded.values())
    assert detail["rounds"][0]["accepted_kw"] == pytest.approx(6.0)
    assert detail["rounds"][0]["bids"] == 3
    await wait_for(lambda: bool(cheap.of_type(Award)) and bool(middle.of_type(Award)))
    assert not dear.of_type(Award)


async def test_awards_count_only_once_acknowledged(
    server: RunningServer, make_home: HomeFactory
) -> None:
    silent = await make_home(first_round_only((3.0, 0.10, ["wh"])), auto_ack=False)
    responsive = await make_home(bids((3.0, 0.20, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=12))

    await wait_for(lambda: bool(silent.of_type(Award)), what="award to the silent home")
    detail = await server.event(event["id"])
    silent_award = next(a for a in detail["awards"] if a["home_id"] == silent.home_id)
    assert silent_award["status"] == "sent"
    assert detail["committed_kw"] == 0

    async def expired_and_replaced() -> bool:
        current = await server.event(event["id"])
        statuses = {(a["home_id"], a["status"]) for a in current["awards"]}
        return (silent.home_id, "expired") in statuses and (
            responsive.home_id,
            "acked",
        ) in statuses

    await wait_for(expired_and_replaced, what="expiry and re-negotiation")
    detail = await server.event(event["id"])
    assert detail["committed_kw"] == pytest.approx(3.0)
    assert len(detail["rounds"]) == 2
    assert detail["rounds"][1]["target_kw"] == pytest.approx(3.0)


async def test_shortfall_is_renegotiated_when_home_opts_out(
    server: RunningServer, make_home: HomeFactory
) -> None:
    leaving = await make_home(bids((3.0, 0.10, ["wh"])))
    backup = await make_home(bids((3.0, 0.30, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=12))
    await event_status(server, event["id"], "active")
    detail = await server.event(event["id"])
    assert [a["home_id"] for a in detail["awards"]] == [leaving.home_id]

    await leaving.client.opt_out(event["id"], reason=OptOutReason.USER)

    await wait_for(lambda: bool(backup.of_type(Award)), what="re-negotiated award")
    detail = await server.event(event["id"])
    second = detail["rounds"][1]
    assert second["target_kw"] == pytest.approx(3.0)
    assert second["offered_homes"] == 1  # the home that opted out is not asked again
    statuses = {a["home_id"]: a["status"] for a in detail["awards"]}
    assert statuses[leaving.home_id] == "opted_out"
    await wait_for(lambda: any(o.round == 2 for o in backup.of_type(Offer)), what="round-2 offer")
    await event_status(server, event["id"], "active")
    assert (await server.event(event["id"]))["committed_kw"] == pytest.approx(3.0)


async def test_load_override_removes_only_that_load_and_renegotiates_it(
    server: RunningServer, make_home: HomeFactory
) -> None:
    both = await make_home(bids((3.0, 0.10, ["wh"]), (7.0, 0.15, ["ev"])))
    backup = await make_home(bids((7.0, 0.35, ["ev"])))
    event = await server.create_event(target_kw=10.0, end=utc_now() + timedelta(seconds=12))
    await event_status(server, event["id"], "active")
    assert (await server.event(event["id"]))["committed_kw"] == pytest.approx(10.0)

    await both.client.opt_out(event["id"], load_id="ev", reason=OptOutReason.OVERRIDE)

    async def renegotiated() -> bool:
        detail = await server.event(event["id"])
        return len(detail["rounds"]) == 2 and detail["rounds"][1]["status"] == "cleared"

    await wait_for(renegotiated, what="round 2 cleared")
    detail = await server.event(event["id"])
    first_award = next(a for a in detail["awards"] if a["home_id"] == both.home_id)
    assert first_award["opted_out_loads"] == ["ev"]
    assert first_award["status"] == "acked"
    assert first_award["committed_kw"] == pytest.approx(3.0)
    assert detail["rounds"][1]["target_kw"] == pytest.approx(7.0)
    await wait_for(lambda: bool(backup.of_type(Award)))


async def test_home_that_drops_off_is_renegotiated_after_grace(
    server: RunningServer, make_home: HomeFactory
) -> None:
    dropping = await make_home(bids((3.0, 0.10, ["wh"])))
    backup = await make_home(bids((3.0, 0.30, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=12))
    await event_status(server, event["id"], "active")

    await dropping.client.close()

    async def lost() -> bool:
        detail = await server.event(event["id"])
        return any(
            a["home_id"] == dropping.home_id and a["status"] == "lost" for a in detail["awards"]
        )

    await wait_for(lost, what="award lost after the grace period")
    await wait_for(lambda: bool(backup.of_type(Award)), what="re-negotiated award")
    detail = await server.event(event["id"])
    assert detail["rounds"][1]["target_kw"] == pytest.approx(3.0)


async def test_event_completes_at_its_end_and_homes_are_told(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=4))
    await event_status(server, event["id"], "completed")
    await wait_for(lambda: bool(home.of_type(EventEnd)), what="event_end")
    detail = await server.event(event["id"])
    assert detail["committed_kw"] == pytest.approx(3.0)
    assert detail["awards"][0]["status"] == "acked"


async def test_cancel_tells_homes_and_cannot_be_repeated(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])))
    event = await server.create_event(target_kw=3.0)
    await event_status(server, event["id"], "committed")

    _, body = await server.request(
        "POST", f"/api/v1/events/{event['id']}/cancel", {"reason": "grid recovered"}, expect=200
    )
    assert body["status"] == "cancelled"
    assert body["cancel_reason"] == "grid recovered"
    await wait_for(lambda: bool(home.of_type(Cancel)), what="cancel reaches the home")
    assert home.of_type(Cancel)[0].reason == "grid recovered"

    status, again = await server.request("POST", f"/api/v1/events/{event['id']}/cancel")
    assert status == 409
    assert again["error"] == "invalid_state"
    status, _ = await server.request("POST", "/api/v1/events/evt_nope/cancel")
    assert status == 404


async def test_restart_mid_event_resumes_it(server: RunningServer, make_home: HomeFactory) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=7))
    await event_status(server, event["id"], "active")

    await server.stop()
    await wait_for(lambda: not home.client.connected, what="home sees the server go")
    await server.start()
    await wait_for(lambda: home.client.connected, what="home reconnects")

    detail = await server.event(event["id"])
    assert detail["status"] == "active"
    assert detail["committed_kw"] == pytest.approx(3.0)
    await event_status(server, event["id"], "completed")
    await wait_for(lambda: bool(home.of_type(EventEnd)), what="event_end after restart")
    detail = await server.event(event["id"])
    assert detail["awards"][0]["status"] == "acked"  # reconnected within the grace period


async def test_restart_during_bidding_clears_with_stored_bids(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])))
    event = await server.create_event(
        target_kw=3.0,
        bid_window_s=3.0,
        start=utc_now() + timedelta(seconds=4),
        end=utc_now() + timedelta(seconds=9),
    )
    await wait_for(lambda: bool(home.of_type(Offer)), what="offer")
    await server.stop()
    await server.start()
    await event_status(server, event["id"], "committed")
    detail = await server.event(event["id"])
    assert [a["home_id"] for a in detail["awards"]] == [home.home_id]
    assert detail["rounds"][0]["bids"] == 1
    await wait_for(lambda: bool(home.of_type(Award)), what="award after the restart")


async def test_direct_event_awards_the_homes_its_target_needs_and_counts_acknowledged_kw(
    server: RunningServer, make_home: HomeFactory
) -> None:
    first = await make_home(auto_ack=False)
    second = await make_home(auto_ack=False)  # 10 kW each: a 13 kW target needs both
    event = await server.create_event(kind=EventKind.DIRECT.value, target_kw=13.0, price_cap=0.25)
    await wait_for(lambda: bool(first.of_type(Award)) and bool(second.of_type(Award)))
    award = first.of_type(Award)[0]
    assert award.kind is EventKind.DIRECT
    assert award.loads == []
    assert award.price == pytest.approx(0.25)

    await first.client.ack_award(award, loads=["wh"], kw=3.0)
    await second.client.ack_award(second.of_type(Award)[0], loads=["wh", "ev"], kw=10.0)

    detail = await server.event(event["id"])
    assert detail["committed_kw"] == pytest.approx(13.0)
    per_home = {a["home_id"]: a for a in detail["awards"]}
    assert per_home[second.home_id]["loads"] == ["wh", "ev"]
    assert detail["rounds"] == []


async def test_home_connecting_during_bidding_gets_the_open_offer(
    server: RunningServer, make_home: HomeFactory
) -> None:
    event = await server.create_event(
        target_kw=3.0,
        bid_window_s=3.0,
        start=utc_now() + timedelta(seconds=4),
        end=utc_now() + timedelta(seconds=8),
    )
    late = await make_home(bids((3.0, 0.10, ["wh"])))
    await wait_for(lambda: bool(late.of_type(Offer)), what="offer to the late home")
    await event_status(server, event["id"], "committed")
    detail = await server.event(event["id"])
    assert [a["home_id"] for a in detail["awards"]] == [late.home_id]


async def test_telemetry_drives_delivered_kw_until_the_home_opts_out(
    server: RunningServer, make_home: HomeFactory
) -> None:
    home = await make_home(bids((3.0, 0.10, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=10))
    await event_status(server, event["id"], "active")

    await home.client.send_telemetry(
        [Sample(ts=utc_now(), power_kw=1.2, shed_kw=2.8, loads={"wh": 0.0, "ev": 1.2})],
        event_id=event["id"],
    )

    detail = await server.event(event["id"])
    assert detail["delivered_kw"] == pytest.approx(2.8)
    assert await server.store.telemetry_count(home.home_id) == 1

    await home.client.opt_out(event["id"])
    assert (await server.event(event["id"]))["delivered_kw"] == 0  # it restores at once


async def test_home_not_participating_is_not_offered(
    server: RunningServer, make_home: HomeFactory
) -> None:
    away = await make_home(bids((3.0, 0.10, ["wh"])), participating=False)
    event = await server.create_event(target_kw=3.0)
    await event_status(server, event["id"], "committed")
    assert not away.of_type(Offer)
    detail = await server.event(event["id"])
    assert detail["rounds"][0]["offered_homes"] == 0
    assert detail["shortfall_kw"] == pytest.approx(3.0)
