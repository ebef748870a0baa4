"""The OpenLEADR side of the comparison: an OpenLEADR 0.5.36 VTN, as its documentation sets one up.

Runs in its own venv (``openleadr_run.py`` makes it): ``python -m tests.benchmarks.scale.vtn
'<settings json>'``. The VTN accepts every registration (the VEN's name is its id), registers no
reports, and queues events with OpenLEADR's own ``add_event`` (one per VEN, as OpenLEADR's
internal queue works), with a callback for each VEN's opt-in. No TLS and no XML signatures
(OpenLEADR signs only with certificates configured; Jeisson's side has no TLS here either).
Logging at ERROR.

Besides OpenLEADR's routes the app has three for the coordinator, standing in for the operator's
code that would call OpenLEADR: ``POST /bench/event`` (queue one event for every registered VEN),
``POST /bench/cancel`` (cancel it for every VEN) and ``GET /bench/health``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web
from openleadr import OpenADRServer, enable_default_logging

from tests.benchmarks.scale.common import HOST, worker_arguments

VTN_ID: Final = "JEISSON-BENCH-VTN"
EVENT_LEAD: Final = timedelta(minutes=5)
EVENT_LENGTH: Final = timedelta(hours=1)


class Vtn:
    """An OpenLEADR server and what the coordinator asks of it."""

    def __init__(self, port: int, poll_s: float) -> None:
        """Build the OpenLEADR server on ``port`` asking VENs to poll every ``poll_s``."""
        self.server = OpenADRServer(
            vtn_id=VTN_ID,
            http_host=HOST,
            http_port=port,
            requested_poll_freq=timedelta(seconds=poll_s),
        )
        self.server.add_handler("on_create_party_registration", self.on_create_party_registration)
        self.server.add_handler("on_register_report", self.on_register_report)
        self.ven_ids: list[str] = []
        self.opted: dict[str, int] = {}
        self.server.app.add_routes(
            [
                web.post("/bench/event", self.add_events),
                web.post("/bench/cancel", self.cancel_events),
                web.get("/bench/health", self.health),
            ]
        )

    async def on_create_party_registration(self, registration: dict[str, Any]) -> tuple[str, str]:
        """Accept every VEN: its name is its id."""
        ven_id = str(registration["ven_name"])
        self.ven_ids.append(ven_id)
        return ven_id, f"reg-{ven_id}"

    async def on_register_report(self, _report: dict[str, Any]) -> None:
        """Request no reports."""

    def on_opt(self, ven_id: str, event_id: str, opt_type: str) -> None:
        """Count a VEN's answer to an event."""
        del ven_id, event_id
        self.opted[opt_type] = self.opted.get(opt_type, 0) + 1

    async def add_events(self, request: web.Request) -> web.Response:
        """Queue event ``tag`` for every registered VEN (one ``add_event`` each)."""
        tag = (await request.json())["tag"]
        started = time.time()
        start = datetime.now(UTC) + EVENT_LEAD
        for ven_id in self.ven_ids:
            self.server.add_event(
                ven_id=ven_id,
                event_id=f"{tag}-{ven_id}",
                signal_name="SIMPLE",
                signal_type="level",
                intervals=[{"dtstart": start, "duration": EVENT_LENGTH, "signal_payload": 1.0}],
                callback=self.on_opt,
            )
        return web.json_response(
            {"vens": len(self.ven_ids), "queued_s": round(time.time() - started, 3)}
        )

    async def cancel_events(self, request: web.Request) -> web.Response:
        """Cancel event ``tag`` for every VEN."""
        tag = (await request.json())["tag"]
        for ven_id in self.ven_ids:
            self.server.cancel_event(ven_id, f"{tag}-{ven_id}")
        return web.json_response({"vens": len(self.ven_ids)})

    async def health(self, _request: web.Request) -> web.Response:
        """Say the VTN is up, with what it counted."""
        return web.json_response({"vens": len(self.ven_ids), "opted": self.opted})


async def main() -> None:
    """Run the VTN until terminated."""
    settings = worker_arguments()
    # ERROR: OpenLEADR warns once per distributed event that it corrects a SIMPLE signal's
    # current value; printing that 19,000 times a round would be the benchmark's cost, not its.
    enable_default_logging(level=logging.ERROR)
    vtn = Vtn(settings["port"], settings["poll_s"])
    await vtn.server.run()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
