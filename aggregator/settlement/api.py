"""The operator's settlement API: statements, corrections, previews, ledgers, reliability.

Every read serves what is stored; only ``POST .../settlement`` and ``.../preview`` compute.
JSON by default, CSV with ``?format=csv`` (downloads). ``docs/settlement.md`` has the rules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Final

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from aggregator.api import json_error, operator_only, parse_body
from aggregator.app_keys import SETTLER, STORE
from aggregator.settlement.baselines import BaselineMethod
from aggregator.settlement.calendar import CalendarError, ProgramCalendar
from aggregator.settlement.program import MAX_SETTLE_AFTER, ProgramSettings
from aggregator.settlement.reliability import PRIOR_SCORE, Reliability
from aggregator.settlement.service import SettlementUnavailableError
from aggregator.settlement.statements import Statement

routes = web.RouteTableDef()

CSV: Final = "csv"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProgramBody(_Body):
    """``PUT /api/v1/settlement/program``: the rules statements are settled under."""

    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    """IANA time zone of the program's days, e.g. ``America/Santiago``."""
    holiday_country: str | None = Field(default=None, min_length=2, max_length=8)
    """ISO 3166-1 alpha-2 country whose public holidays are excluded from like-days."""
    holiday_subdivision: str | None = Field(default=None, min_length=1, max_length=16)
    settle_after_s: Annotated[
        float, Field(ge=0, le=MAX_SETTLE_AFTER.total_seconds(), allow_inf_nan=False)
    ] = 86_400.0
    """The late-telemetry window: statements are settled this long after an event ends."""
    estimated_pay_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    """What a kWh measured from estimates is paid relative to a metered one."""

    def to_settings(self) -> ProgramSettings:
        """Return the settings (raises CalendarError for an unknown zone or country)."""
        return ProgramSettings(
            calendar=ProgramCalendar(
                timezone=self.timezone,
                holiday_country=self.holiday_country,
                holiday_subdivision=self.holiday_subdivision,
            ),
            settle_after=timedelta(seconds=self.settle_after_s),
            estimated_pay_ratio=self.estimated_pay_ratio,
        )


class LedgerQuery(_Body):
    """``GET /api/v1/homes/{id}/ledger`` query: the booking period (both optional)."""

    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


def program_view(settings: ProgramSettings) -> dict[str, object]:
    """Return the JSON view of the program settings."""
    return {
        "timezone": settings.calendar.timezone,
        "holiday_country": settings.calendar.holiday_country,
        "holiday_subdivision": settings.calendar.holiday_subdivision,
        "settle_after_s": settings.settle_after.total_seconds(),
        "estimated_pay_ratio": settings.estimated_pay_ratio,
        "history_days": settings.history_days,
    }


def _statement_response(statement: Statement, request: web.Request, status: int) -> web.Response:
    if request.query.get("format") == CSV:
        name = f"statement-{statement.event_id}-v{statement.version}.csv"
        return web.Response(
            text=statement.to_csv(),
            status=status,
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return web.json_response(statement.to_json_dict(), status=status)


@routes.get("/api/v1/events/{event_id}/settlement")
@operator_only
async def get_statement(request: web.Request) -> web.Response:
    """Return an event's stored statement: the latest version, or ``?version=N``."""
    event_id = request.match_info["event_id"]
    settler = request.app[SETTLER]
    event = await request.app[STORE].get_event(event_id)
    if event is None:
        return json_error(404, "not_found", "no such event")
    version: int | None = None
    if "version" in request.query:
        try:
            version = int(request.query["version"])
        except ValueError:
            return json_error(400, "invalid_request", "version must be an integer")
    statement = await settler.repository.statement(event_id, version)
    if statement is None:
        if version is not None:
            return json_error(404, "not_found", f"event {event_id} has no version {version}")
        program = await settler.repository.program()
        due = event.end + program.settle_after
        return json_error(
            409,
            "settlement_unavailable",
            f"not settled yet: statements are settled {program.settle_after} after the event "
            f"ends (this one at {due.isoformat()}), or at once with POST",
        )
    return _statement_response(statement, request, 200)


@routes.post("/api/v1/events/{event_id}/settlement")
@operator_only
async def settle_now(request: web.Request) -> web.Response:
    """Settle a finished event now: 201 with the new version, or 200 when nothing changed."""
    event_id = request.match_info["event_id"]
    settler = request.app[SETTLER]
    try:
        stored = await settler.settle(event_id, "settled by the operator")
    except KeyError:
        return json_error(404, "not_found", "no such event")
    except SettlementUnavailableError as err:
        return json_error(409, "settlement_unavailable", str(err))
    mine = next((item for item in stored if item.event_id == event_id), None)
    if mine is not None:
        return _statement_response(mine, request, 201)
    current = await settler.repository.statement(event_id)
    if current is None:  # pragma: no cover - a settled event always has a statement
        return json_error(409, "settlement_unavailable", "nothing was settled")
    return _statement_response(current, request, 200)


@routes.get("/api/v1/events/{event_id}/settlement/versions")
@operator_only
async def statement_versions(request: web.Request) -> web.Response:
    """List every version of an event's statement (headers, oldest first)."""
    event_id = request.match_info["event_id"]
    versions = await request.app[SETTLER].repository.statement_versions(event_id)
    return web.json_response(
        {"event_id": event_id, "versions": [item.header_json() for item in versions]}
    )


@routes.get("/api/v1/events/{event_id}/settlement/preview")
@operator_only
async def preview(request: web.Request) -> web.Response:
    """Compute (not store) an event's settlement, e.g. with ``?baseline=<method>``."""
    try:
        method = BaselineMethod(request.query["baseline"]) if "baseline" in request.query else None
    except ValueError:
        choices = ", ".join(item.value for item in BaselineMethod)
        return json_error(400, "invalid_request", f"baseline must be one of: {choices}")
    try:
        report = await request.app[SETTLER].preview(request.match_info["event_id"], method)
    except KeyError:
        return json_error(404, "not_found", "no such event")
    except SettlementUnavailableError as err:
        return json_error(409, "settlement_unavailable", str(err))
    if request.query.get("format") == CSV:
        return web.Response(text=report.to_csv(), content_type="text/csv")
    return web.json_response({**report.to_json_dict(), "preview": True})


@routes.get("/api/v1/homes/{home_id}/ledger")
@operator_only
async def home_ledger(request: web.Request) -> web.Response:
    """Return a home's bookings (statements, corrections) with totals per local month."""
    home_id = request.match_info["home_id"]
    if await request.app[STORE].get_home(home_id) is None:
        return json_error(404, "not_found", f"no home {home_id}")
    query = LedgerQuery.model_validate(
        {key: request.query[key] for key in ("since", "until") if key in request.query}
    )
    repository = request.app[SETTLER].repository
    program = await repository.program()
    ledger = await repository.ledger(home_id, program.calendar, query.since, query.until)
    if request.query.get("format") == CSV:
        return web.Response(
            text=ledger.to_csv(),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="ledger-{home_id}.csv"'},
        )
    return web.json_response(ledger.to_json_dict())


def reliability_view(home_id: str, found: Reliability | None) -> dict[str, object]:
    """Return a home's reliability (the prior when it has no settled event yet)."""
    if found is None:
        found = Reliability(home_id, PRIOR_SCORE, 0, 0.0, 0.0)
    return found.to_json_dict()


@routes.get("/api/v1/reliability")
@operator_only
async def all_reliability(request: web.Request) -> web.Response:
    """Return every home's reliability score (the prior for homes without settled events)."""
    homes = await request.app[STORE].list_homes()
    scores = await request.app[SETTLER].repository.reliability()
    return web.json_response(
        {"homes": [reliability_view(home.home_id, scores.get(home.home_id)) for home in homes]}
    )


@routes.get("/api/v1/settlement/program")
@operator_only
async def get_program(request: web.Request) -> web.Response:
    """Return the program settings statements are settled under."""
    return web.json_response(program_view(await request.app[SETTLER].repository.program()))


@routes.put("/api/v1/settlement/program")
@operator_only
async def put_program(request: web.Request) -> web.Response:
    """Change the program settings (used by every settlement from now on)."""
    body = await parse_body(request, ProgramBody)
    try:
        settings = body.to_settings()
    except CalendarError as err:
        return json_error(400, "invalid_request", str(err))
    await request.app[SETTLER].repository.save_program(settings)
    return web.json_response(program_view(settings))
