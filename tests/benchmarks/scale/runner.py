"""Run the scale benchmark: Jeisson and OpenLEADR at N homes each, print a table, write JSON.

``python -m tests.benchmarks.scale --homes 1000,10000,19000`` (``scripts/bench scale`` runs it).
``--smoke`` is the quick check CI runs: 200 homes, short windows, one round of each.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from tests.benchmarks.scale.common import load_average
from tests.benchmarks.scale.jeisson_run import (
    SERVER_SOURCE_VARIABLE,
    EnrolledFleet,
    JeissonBench,
    server_source,
)
from tests.benchmarks.scale.processes import REPO
from tests.benchmarks.scale.settings import DEFAULT_CACHE, RunSettings

SMOKE_HOMES: Final = 200
KIB: Final = 1024


def machine() -> dict[str, Any]:
    """Describe the machine and the code measured."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as file:
        for line in file:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, as scripts do
        cwd=server_source() or REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def parse_sizes(text: str) -> list[int]:
    """Parse ``1000,10000,19k`` into home counts."""
    sizes = []
    for raw in text.split(","):
        part = raw.strip().lower()
        sizes.append(int(float(part[:-1]) * 1000) if part.endswith("k") else int(part))
    return sizes


def build_parser() -> argparse.ArgumentParser:
    """Return the command line of the scale benchmark."""
    parser = argparse.ArgumentParser(prog="scripts/bench scale", description=__doc__)
    parser.add_argument("--homes", default="1000,10000,19000", help="sizes, e.g. 1000,10k,19k")
    parser.add_argument("--systems", default="jeisson,openleadr", help="jeisson, openleadr or both")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--idle", type=float, default=None, help="idle window (s)")
    parser.add_argument("--rounds", type=int, default=None, help="events per size")
    parser.add_argument("--no-restart", action="store_true", help="skip the restart phase")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="enrolled fleets, venvs")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_HOMES} homes, short windows")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the server during each Jeisson round"
    )
    parser.add_argument(
        "--server-src",
        type=Path,
        default=None,
        help="measure the server of another checkout (e.g. an older commit, for a baseline)",
    )
    return parser


def settings_from(args: argparse.Namespace, work_dir: Path) -> RunSettings:
    """Return the run's settings from the command line."""
    settings = RunSettings(work_dir=work_dir, cache_dir=args.cache)
    if args.smoke:
        settings = replace(
            settings,
            idle_s=3.0,
            rounds=1,
            openleadr_rounds=1,
            openleadr_idle_s=3.0,
            openleadr_polls=(1.0,),
        )
    if args.idle is not None:
        settings = replace(settings, idle_s=args.idle, openleadr_idle_s=args.idle)
    if args.rounds is not None:
        settings = replace(settings, rounds=args.rounds, openleadr_rounds=args.rounds)
    if args.no_restart:
        settings = replace(settings, restart=False)
    if args.profile:
        settings = replace(settings, profile=True)
    return settings


async def run(
    sizes: Sequence[int],
    systems: Sequence[str],
    settings: RunSettings,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Measure every system at every size; return the whole report.

    ``save`` gets the report after every run, so a failure (or a stop) loses only what ran then;
    a run that fails is recorded with its error and the next one goes on.
    """
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": _settings_view(settings),
        "runs": [],
    }
    source = server_source()
    label = "" if source is None else "-" + hashlib.sha256(str(source).encode()).hexdigest()[:8]
    fleet = EnrolledFleet(settings.cache_dir / f"jeisson-fleet{label}")
    for size in sizes:
        if "jeisson" in systems:
            await fleet.ensure(max(sizes), settings.work_dir)
            print(f"== jeisson, {size} homes (load {load_average()})", file=sys.stderr)
            started = time.monotonic()
            try:
                result = await JeissonBench(size, settings, fleet).run()
            except Exception as err:
                result = {"system": "jeisson", "homes": size, "error": repr(err)}
            result["wall_s"] = round(time.monotonic() - started, 1)
            report["runs"].append(result)
            print(format_run(result), file=sys.stderr)
            save(report)
        if "openleadr" in systems:
            from tests.benchmarks.scale.openleadr_run import OpenLeadrBench

            print(f"== openleadr, {size} VENs (load {load_average()})", file=sys.stderr)
            started = time.monotonic()
            bench = OpenLeadrBench(size, settings)
            try:
                await bench.run()
            except Exception as err:
                bench.results.append({"system": "openleadr", "homes": size, "error": repr(err)})
            for result in bench.results:
                result["wall_s"] = round(time.monotonic() - started, 1)
                report["runs"].append(result)
                print(format_run(result), file=sys.stderr)
            save(report)
    return report


def _settings_view(settings: RunSettings) -> dict[str, Any]:
    view = {
        name: getattr(settings, name)
        for name in settings.__dataclass_fields__
        if name not in ("work_dir", "cache_dir")
    }
    view["openleadr_polls"] = list(settings.openleadr_polls)
    return view


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _best(rounds: list[dict[str, Any]], part: str, key: str) -> float | None:
    values = [item[part][key] for item in rounds if item[part][key] is not None]
    return min(values) if values else None


def format_run(result: dict[str, Any]) -> str:
    """Return one run as a short block of text."""
    if "error" in result:
        return f"{result['system']} {result['homes']}: failed: {result['error']}"
    return json.dumps(result.get("summary") or summarise(result), indent=None)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Return the headline figures of one run (the table's row)."""
    homes = result["homes"]
    rounds = result.get("rounds", [])
    rss_key = "rss_idle_bytes" if "rss_idle_bytes" in result else "rss_connected_bytes"
    rss = None
    if rss_key in result and "rss_start_bytes" in result:
        rss = (result[rss_key] - result["rss_start_bytes"]) / homes / KIB
    summary = {
        "system": result["system"]
        + (f" poll {result['poll_s']:g} s" if "poll_s" in result else ""),
        "homes": homes,
        "connect_s": result.get("connect", {}).get("max_s"),
        "reconnect_s": result.get("reconnect", {}).get("max_s"),
        "offer_p50_s": _median([item["offer"]["p50_s"] for item in rounds]),
        "offer_p99_s": _median([item["offer"]["p99_s"] for item in rounds]),
        "round_p50_s": _median([item["round"]["p50_s"] for item in rounds]),
        "round_p99_s": _median([item["round"]["p99_s"] for item in rounds]),
        "cpu_ms_per_home_round": _median([item["server_cpu_ms_per_home"] for item in rounds]),
        "idle_cpu_ms_per_home_min": result.get("idle", {}).get("cpu_ms_per_home_per_min"),
        "rss_kib_per_home": None if rss is None else round(rss, 1),
    }
    result["summary"] = summary
    return summary


def _median(values: list[float | None]) -> float | None:
    present = sorted(value for value in values if value is not None)
    return present[len(present) // 2] if present else None


COLUMNS: Final = (
    ("system", "system", None),
    ("homes", "homes", None),
    ("connect_s", "connect s", 1),
    ("reconnect_s", "reconnect s", 1),
    ("offer_p50_s", "offer p50 s", 3),
    ("offer_p99_s", "offer p99 s", 3),
    ("round_p50_s", "round p50 s", 3),
    ("round_p99_s", "round p99 s", 3),
    ("cpu_ms_per_home_round", "CPU ms/home/round", 3),
    ("idle_cpu_ms_per_home_min", "idle CPU ms/home/min", 4),
    ("rss_kib_per_home", "RSS KiB/home", 1),
)


def table(report: dict[str, Any]) -> str:
    """Return the report's headline figures as a Markdown table."""
    lines = [
        "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for result in report["runs"]:
        if "error" in result:
            lines.append(f"| {result['system']} | {result['homes']} | failed: {result['error']} |")
            continue
        summary = result.get("summary") or summarise(result)
        cells = []
        for key, _, digits in COLUMNS:
            value = summary.get(key)
            cells.append(str(value) if digits is None else _fmt(value, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


RATIO_KEYS: Final = (
    ("offer_p99_s", "offer p99"),
    ("round_p99_s", "round p99"),
    ("cpu_ms_per_home_round", "CPU/home/round"),
    ("idle_cpu_ms_per_home_min", "idle CPU/home/min"),
    ("rss_kib_per_home", "RSS/home"),
    ("connect_s", "connect"),
)
EXTRAPOLATE_TO: Final = 50_000
CURVE_KEYS: Final = ("round_p99_s", "offer_p99_s", "connect_s", "reconnect_s")


def ratios(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Return Jeisson / OpenLEADR for each size and poll interval (below 1: Jeisson better)."""
    rows = []
    summaries = [
        result.get("summary") or summarise(result)
        for result in report["runs"]
        if "error" not in result
    ]
    for ours in (item for item in summaries if item["system"] == "jeisson"):
        for theirs in summaries:
            if not theirs["system"].startswith("openleadr") or theirs["homes"] != ours["homes"]:
                continue
            row: dict[str, Any] = {"homes": ours["homes"], "versus": theirs["system"]}
            for key, _ in RATIO_KEYS:
                mine, other = ours.get(key), theirs.get(key)
                row[key] = round(mine / other, 3) if mine is not None and other else None
            rows.append(row)
    return rows


def ratio_table(rows: list[dict[str, Any]]) -> str:
    """Return the ratios as a Markdown table."""
    head = ["homes", "Jeisson / ...", *(title for _, title in RATIO_KEYS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["homes"]), row["versus"]]
        cells += [_fmt(row[key], 3) for key, _ in RATIO_KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve(report: dict[str, Any]) -> dict[str, Any]:
    """Fit Jeisson's figures against N (least squares, a + b*N) and extrapolate to 50,000.

    An extrapolation from at most ~19k homes, not a measurement: one process cannot hold 50k
    here (the fd limit is 20,000).
    """
    summaries = [
        result.get("summary") or summarise(result)
        for result in report["runs"]
        if result["system"] == "jeisson" and "error" not in result
    ]
    fits: dict[str, Any] = {}
    for key in CURVE_KEYS:
        points = [(item["homes"], item[key]) for item in summaries if item.get(key) is not None]
        if len({homes for homes, _ in points}) < 2:
            continue
        count = len(points)
        mean_n = sum(homes for homes, _ in points) / count
        mean_y = sum(value for _, value in points) / count
        spread_n = sum((homes - mean_n) ** 2 for homes, _ in points)
        slope = sum((homes - mean_n) * (value - mean_y) for homes, value in points) / spread_n
        intercept = mean_y - slope * mean_n
        fits[key] = {
            "points": points,
            "intercept_s": round(intercept, 4),
            "per_1000_homes_s": round(slope * 1000, 4),
            f"extrapolated_{EXTRAPOLATE_TO}_s": round(intercept + slope * EXTRAPOLATE_TO, 2),
        }
    return fits


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    args = build_parser().parse_args(argv)
    sizes = [SMOKE_HOMES] if args.smoke else parse_sizes(args.homes)
    systems = [part.strip() for part in args.systems.split(",") if part.strip()]
    work_dir = Path(tempfile.mkdtemp(prefix="jeisson-scale-"))
    if args.server_src is not None:
        os.environ[SERVER_SOURCE_VARIABLE] = str(args.server_src.resolve())
    settings = settings_from(args, work_dir)

    def save(report: dict[str, Any]) -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2) + "\n")

    report = asyncio.run(run(sizes, systems, settings, save))
    report["load_at_end"] = load_average()
    report["ratios"] = ratios(report)
    report["curve"] = curve(report)
    print(table(report))
    if report["ratios"]:
        print()
        print(ratio_table(report["ratios"]))
    for key, fit in report["curve"].items():
        print(
            f"{key}: {fit['intercept_s']} s + {fit['per_1000_homes_s']} s per 1000 homes "
            f"-> {fit[f'extrapolated_{EXTRAPOLATE_TO}_s']} s at {EXTRAPOLATE_TO} (extrapolated)"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.json}", file=sys.stderr)
    if args.keep:
        print(f"logs kept in {work_dir}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(work_dir, ignore_errors=True)
    return 0
