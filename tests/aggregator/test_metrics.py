"""Prometheus metrics of a running aggregator."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jeisson.common.errors import RequestRejected
from jeisson.common.protocol import BidStep
from tests.helpers import wait_for

from .common import HomeFactory, RunningServer


async def scrape(
    server: RunningServer, http: aiohttp.ClientSession, *, operator: bool = False
) -> dict[str, float]:
    """Return every sample as ``name{labels}`` → value (``operator``: with the token)."""
    headers = {"Authorization": f"Bearer {server.operator_token}"} if operator else {}
    async with http.get(server.url + "/metrics", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def test_metrics_follow_a_negotiation(
    server: RunningServer, make_home: HomeFactory, http: aiohttp.ClientSession
) -> None:
    home = await make_home(lambda _offer: [BidStep(kw=3.0, price=0.1, loads=["wh"])])
    event = await server.create_event(target_kw=3.0)

    async def committed() -> bool:
        return (await server.event(event["id"]))["committed_kw"] == pytest.approx(3.0)

    await wait_for(committed, what="commitment")
    public = await scrape(server, http)
    assert not [name for name in public if "event_id" in name or name.startswith("jeisson_event_")]
    samples = await scrape(server, http, operator=True)

    assert samples["jeisson_homes_connected{}"] == 1
    assert samples["jeisson_messages_received_total{type=bid}"] == 1
    assert samples["jeisson_messages_received_total{type=award_ack}"] == 1
    assert samples["jeisson_messages_sent_total{type=offer}"] == 1
    assert samples["jeisson_messages_sent_total{type=award}"] == 1
    assert samples["jeisson_clearing_seconds_count{}"] == 1
    assert samples["jeisson_negotiation_round_seconds_count{}"] == 1
    assert samples[f"jeisson_event_committed_kw{{event_id={event['id']}}}"] == pytest.approx(3.0)
    assert samples[f"jeisson_event_target_kw{{event_id={event['id']}}}"] == pytest.approx(3.0)
    assert home.client.connected


async def test_refused_messages_are_counted_by_kind_and_no_secret_is_exposed(
    server: RunningServer, make_home: HomeFactory, http: aiohttp.ClientSession
) -> None:
    home = await make_home()
    with pytest.raises(RequestRejected):
        await home.client.opt_out("evt_unknown")
    samples = await scrape(server, http)
    assert samples["jeisson_errors_total{kind=unknown_event}"] == 1
    async with http.get(server.url + "/metrics") as response:
        text = await response.text()
    assert server.operator_token not in text
    async with http.get(
        server.url + "/metrics", headers={"Authorization": "Bearer not-a-token"}
    ) as response:
        assert response.status == 401
