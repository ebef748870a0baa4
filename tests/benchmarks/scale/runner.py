"""Run the scale benchmark: Jeisson and OpenLEADR at N homes each, print a table, write JSON.

``python -m tests.benchmarks.scale --homes 1000,10000,19000`` (``scripts/bench scale`` runs it).
``--smoke`` is the quick check CI runs: 200 homes, short windows, one round of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from tests.benchmarks.scale.common import load_average
from tests.benchmarks.scale.jeisson_run import EnrolledFleet, JeissonBench
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
        cwd=REPO,
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
    return settings


async def run(
    sizes: Sequence[int], systems: Sequence[str], settings: RunSettings
) -> dict[str, Any]:
    """Measure every system at every size; return the whole report."""
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": _settings_view(settings),
        "runs": [],
    }
    fleet = EnrolledFleet(settings.cache_dir / "jeisson-fleet")
    for size in sizes:
        if "jeisson" in systems:
            await fleet.ensure(max(sizes), settings.work_dir)
            print(f"== jeisson, {size} homes (load {load_average()})", file=sys.stderr)
            started = time.monotonic()
            result = await JeissonBench(size, settings, fleet).run()
            result["wall_s"] = round(time.monotonic() - started, 1)
            report["runs"].append(result)
            print(format_run(result), file=sys.stderr)
        if "openleadr" in systems:
            from tests.benchmarks.scale.openleadr_run import OpenLeadrBench

            print(f"== openleadr, {size} VENs (load {load_average()})", file=sys.stderr)
            started = time.monotonic()
            results = await OpenLeadrBench(size, settings).run()
            for result in results:
                result["wall_s"] = round(time.monotonic() - started, 1)
                report["runs"].append(result)
                print(format_run(result), file=sys.stderr)
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
        summary = result.get("summary") or summarise(result)
        cells = []
        for key, _, digits in COLUMNS:
            value = summary.get(key)
            cells.append(str(value) if digits is None else _fmt(value, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    args = build_parser().parse_args(argv)
    sizes = [SMOKE_HOMES] if args.smoke else parse_sizes(args.homes)
    systems = [part.strip() for part in args.systems.split(",") if part.strip()]
    work_dir = Path(tempfile.mkdtemp(prefix="jeisson-scale-"))
    settings = settings_from(args, work_dir)
    report = asyncio.run(run(sizes, systems, settings))
    report["load_at_end"] = load_average()
    print(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.json}", file=sys.stderr)
    if args.keep:
        print(f"logs kept in {work_dir}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(work_dir, ignore_errors=True)
    return 0
