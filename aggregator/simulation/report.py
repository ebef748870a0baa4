"""Renders the demo's report (what :func:`aggregator.simulation.demo.run_demo` returns) as text."""

from __future__ import annotations

from typing import Any, Final

RULE: Final = "-" * 78


def _price(value: float | None, currency: str) -> str:
    return "-" if value is None else f"{value:.3f} {currency}/kWh"


def _rounds(report: dict[str, Any]) -> list[str]:
    currency = report["event"]["currency"]
    lines = [
        "Negotiation rounds",
        f"  {'round':>5} {'opened':>8} {'target':>9} {'offered':>8} {'bids':>5} {'steps':>6}"
        f" {'bid kW':>8} {'accepted':>9} {'price':>18} {'shortfall':>10}",
    ]
    lines.extend(
        f"  {item['round']:>5} {item['opened_at_s']:>+7.1f}s {item['target_kw']:>6.1f} kW"
        f" {item['offered_homes']:>8} {item['bids']:>5} {item['steps']:>6}"
        f" {item['offered_kw']:>8.1f} {item['accepted_kw']:>6.1f} kW"
        f" {_price(item['clearing_price'], currency):>18} {item['shortfall_kw']:>7.1f} kW"
        for item in report["rounds"]
    )
    lines.append("  (opened: seconds relative to the event start; offered = homes offered)")
    return lines


def _drop(report: dict[str, Any]) -> list[str]:
    drop = report["drop"]
    if drop is None:
        return ["Drop-out", "  no awarded home was connected mid-event; nothing was dropped"]
    rounds = ", ".join(str(number) for number in drop["renegotiation_rounds"]) or "none"
    target = drop["renegotiated_target_kw"]
    return [
        "Drop-out and re-negotiation",
        f"  {drop['home']} dropped off at {drop['at_s']:+.1f}s, taking "
        f"{drop['lost_kw']:.1f} kW of the {drop['committed_before_kw']:.1f} kW committed",
        f"  commitment left: {drop['committed_left_kw']:.1f} kW; re-negotiation round(s): "
        f"{rounds}" + (f", offering {target:.1f} kW" if target is not None else ""),
        f"  recovered by re-negotiation: {drop['recovered_kw']:.1f} kW; "
        f"shortfall remaining: {drop['remaining_shortfall_kw']:.1f} kW",
    ]


def _timeline(report: dict[str, Any]) -> list[str]:
    lines = [
        "Committed vs delivered (sampled every second from GET /api/v1/events/{id})",
        f"  {'t':>7} {'status':<12} {'round':>5} {'committed':>11} {'delivered':>11}",
    ]
    lines.extend(
        f"  {row['t_s']:>+6.1f}s {row['status']:<12} {row['round']:>5}"
        f" {row['committed_kw']:>8.1f} kW {row['delivered_kw']:>8.1f} kW"
        for row in report["timeline"]
    )
    return lines


def _kinds(report: dict[str, Any]) -> list[str]:
    lines = [
        "Loads by kind (the home policy: chargers and thermostats turn down to a level)",
        f"  {'kind':<13} {'loads':>6} {'awarded':>8} {'at a level':>11} {'moved':>10}",
    ]
    lines.extend(
        f"  {row['kind']:<13} {row['loads']:>6} {row['awarded']:>8} {row['at_level']:>11}"
        f" {row['kw']:>7.1f} kW"
        for row in report["kinds"]
    )
    return lines


def _power_up(report: dict[str, Any]) -> list[str]:
    event = report["power_up"]
    kinds = ", ".join(f"{count} {kind}" for kind, count in event["loads_by_kind"].items())
    return [
        "Power-up event (absorbing surplus: homes add load)",
        f"  {event['status']}: target {event['target_kw']:.1f} kW, {event['bids']} bids from "
        f"{event['offered_homes']} homes offered, {event['accepted_kw']:.1f} kW accepted at "
        f"{_price(event['clearing_price'], report['event']['currency'])}",
        f"  {event['homes_awarded']} homes awarded; loads: {kinds or 'none'}",
    ]


def render_text(report: dict[str, Any]) -> str:
    """Return a readable summary of a demo run."""
    homes = report["homes"]
    event = report["event"]
    final = report["final"]
    restore = report["restore"]
    header = [
        RULE,
        "Jeisson demo: one market event negotiated in real time",
        RULE,
        f"Fleet: {homes['count']} simulated homes ({homes['connected']} connected), "
        f"{homes['loads']} loads, {homes['flexible_kw']:.1f} kW flexible (seed {report['seed']})",
        f"Event {event['id']}: shed {event['target_kw']:.1f} kW for {event['duration_s']:.0f} s "
        f"at most {_price(event['price_cap'], event['currency'])}",
        f"  ({event['target_share']:.0%} of the flexible kW; "
        f"bid window {event['bid_window_s']:.0f} s, "
        f"restore stagger {event['restore_stagger_s']:.0f} s)",
    ]
    footer = [
        "Restore",
        f"  {restore['loads_switched_off']} loads switched off; {restore['loads_restored']} "
        f"restored by {restore['homes_restored']} homes,",
        f"  between {restore['first_after_end_s']:+.1f}s and {restore['last_after_end_s']:+.1f}s "
        f"after the end (largest planned delay {restore['max_delay_s']:.1f} s)",
        "Result",
        f"  status {final['status']}; committed {final['committed_kw']:.1f} kW of "
        f"{event['target_kw']:.1f} kW (shortfall {final['shortfall_kw']:.1f} kW) at "
        f"{_price(final['clearing_price'], event['currency'])}",
        "  awards: "
        + ", ".join(f"{count} {status}" for status, count in final["awards_by_status"].items()),
    ]
    closing = [f"Demo took {report['elapsed_s']:.1f} s", RULE]
    sections = [
        header,
        _rounds(report),
        _kinds(report),
        _drop(report),
        _timeline(report),
        footer,
        _power_up(report),
        closing,
    ]
    return "\n\n".join("\n".join(section) for section in sections)
