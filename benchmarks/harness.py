"""The benchmark harness: scenarios as plug-ins, one JSON layout, a table and an SVG chart.

A scenario is a module in :mod:`benchmarks.scenarios` that calls :func:`register` with a
:class:`Scenario`. Its ``run(options)`` measures ours and the reference side by side, in one process
and one run (figures from different runs are not comparable, ``spec/dataplane.md`` §7), and returns
a :class:`Report`. The harness adds the machine and the command line and writes::

    {"scenario": str, "description": str, "machine": {...}, "command": str, "started": ISO time,
     "results": [{"name", "impl", "value", "unit"}, ...], "ratios": {name: float}, "notes": {...}}

plus ``PATH.svg`` (``PATH`` with its suffix replaced), a bar chart of the results on a log scale.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import pkgutil
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from dataplane import wire

__all__ = [
    "Options",
    "Report",
    "Result",
    "Scenario",
    "UsageError",
    "machine_info",
    "main",
    "register",
    "render_svg",
    "render_table",
    "run_scenario",
    "scenarios",
]


DEFAULT_SEED = 7348


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class ScenarioUnavailableError(Exception):
    """A scenario cannot run on this machine (not root, a peer program missing): exit status 2."""


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool = False  # a smaller run, for tests and a first look; same code paths
    seed: int = DEFAULT_SEED


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    impl: str
    value: float
    unit: str


@dataclass(slots=True)
class Report:
    results: list[Result]
    ratios: dict[str, float]
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    run: Callable[[Options], Report]


_REGISTRY: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    if scenario.name == "all" or not scenario.name.isidentifier():
        raise ValueError(f"bad scenario name {scenario.name!r}")
    existing = _REGISTRY.get(scenario.name)
    if existing is not None and existing.run is not scenario.run:
        raise ValueError(f"scenario {scenario.name!r} registered twice")
    _REGISTRY[scenario.name] = scenario
    return scenario


def scenarios() -> dict[str, Scenario]:
    """Every scenario, by name: imports each module of :mod:`benchmarks.scenarios`."""
    package = importlib.import_module("benchmarks.scenarios")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(sorted(_REGISTRY.items()))


# -- the machine -----------------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    memory = next(
        (
            int(line.split()[1]) * 1024
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    implementation = wire.implementation()
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memory_bytes": memory,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "implementation": implementation,
    }


# -- running and reporting -------------------------------------------------------------------------------


def run_scenario(scenario: Scenario, options: Options, command: str) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    report = scenario.run(options)
    for name, value in report.ratios.items():
        if not math.isfinite(value) or value <= 0:
            raise RuntimeError(f"scenario {scenario.name}: ratio {name} = {value} is not a positive number")
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "machine": machine_info(),
        "command": command,
        "started": started,
        "options": asdict(options),
        "results": [asdict(result) for result in report.results],
        "ratios": report.ratios,
        "notes": report.notes,
    }


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(document: dict[str, Any]) -> str:
    results = document["results"]
    rows = [("name", "impl", "value", "unit")]
    rows += [(r["name"], r["impl"], _number(r["value"]), r["unit"]) for r in results]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    lines = [f"{document['scenario']}: {document['description']}", ""]
    for k, row in enumerate(rows):
        name, impl, value, unit = row
        lines.append(f"{name:<{widths[0]}}  {impl:<{widths[1]}}  {value:>{widths[2]}}  {unit}".rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    if document["ratios"]:
        lines += ["", "ratios:"]
        width = max(len(name) for name in document["ratios"])
        lines += [f"  {name:<{width}}  {_number(value)}" for name, value in document["ratios"].items()]
    return "\n".join(lines)


def render_svg(document: dict[str, Any]) -> str:
    """A horizontal bar chart of the results on a log scale (values span orders of magnitude)."""
    results = [r for r in document["results"] if r["value"] > 0]
    chart_width, bar_height, gap, top = 520, 22, 8, 56
    # About 7 px per character at 12 px sans-serif, so the longest label is never clipped.
    label_width = 24 + 7 * max((len(f"{r['impl']} - {r['name']}") for r in results), default=10)
    height = top + len(results) * (bar_height + gap) + 40
    width = label_width + chart_width + 110
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(document["scenario"])}</text>',
        f'<text x="10" y="38" fill="#555">{escape(document["description"])}</text>',
    ]
    if results:
        low = math.floor(math.log10(min(r["value"] for r in results)))
        high = max(low + 1, math.ceil(math.log10(max(r["value"] for r in results))))

        def x(value: float) -> float:
            return label_width + (math.log10(value) - low) / (high - low) * chart_width

        bottom = height - 30
        for decade in range(low, high + 1):
            gx = x(10.0**decade)
            parts.append(f'<line x1="{gx:.1f}" y1="{top - 6}" x2="{gx:.1f}" y2="{bottom}" stroke="#ddd"/>')
            parts.append(
                f'<text x="{gx:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#555">1e{decade}</text>'
            )
        for k, r in enumerate(results):
            y = top + k * (bar_height + gap)
            label = escape(f"{r['impl']} - {r['name']}")
            parts.append(f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">{label}</text>')
            parts.append(
                f'<rect x="{label_width}" y="{y}" width="{max(x(r["value"]) - label_width, 1):.1f}" '
                f'height="{bar_height}" fill="{"#2b6cb0" if k % 2 == 0 else "#4a90d9"}"/>'
            )
            text = escape(f"{_number(r['value'])} {r['unit']}")
            parts.append(f'<text x="{x(r["value"]) + 6:.1f}" y="{y + 15}">{text}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _write(document: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(document, indent=2) + "\n")
    svg = path.with_suffix(".svg")
    svg.write_text(render_svg(document))
    return svg


# -- command line ----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run benchmark scenarios: ours and the reference, side by side.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the scenarios")
    run = commands.add_parser("run", help="run a scenario, or all of them")
    run.add_argument("scenario", help="a scenario name, or 'all'")
    run.add_argument("--json", type=Path, help="write the report here (and an SVG chart beside it)")
    run.add_argument("--json-dir", type=Path, help="write one report per scenario into this directory")
    run.add_argument("--quick", action="store_true", help="a smaller, faster run (same code paths)")
    run.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for generated inputs")
    return parser


def _targets(args: argparse.Namespace, known: dict[str, Scenario]) -> list[tuple[Scenario, Path | None]]:
    if args.scenario == "all":
        if args.json is not None:
            raise UsageError("'run all' writes one report per scenario: use --json-dir DIR, not --json")
        chosen = list(known.values())
    elif args.scenario in known:
        chosen = [known[args.scenario]]
    else:
        raise UsageError(f"unknown scenario {args.scenario!r}; valid: {', '.join([*known, 'all'])}")
    if args.json is not None and args.json_dir is not None:
        raise UsageError("give --json or --json-dir, not both")
    if args.json is not None:
        if args.json.is_dir():
            raise UsageError(f"--json {args.json} is a directory; give a file path")
        if not args.json.parent.is_dir():
            raise UsageError(f"--json {args.json}: directory {args.json.parent} does not exist")
        return [(chosen[0], args.json)]
    if args.json_dir is not None:
        if args.json_dir.exists() and not args.json_dir.is_dir():
            raise UsageError(f"--json-dir {args.json_dir} is not a directory")
        args.json_dir.mkdir(parents=True, exist_ok=True)
        return [(scenario, args.json_dir / f"{scenario.name}.json") for scenario in chosen]
    return [(scenario, None) for scenario in chosen]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(arguments)
    known = scenarios()
    if args.command == "list":
        width = max((len(name) for name in known), default=0)
        for name, scenario in known.items():
            print(f"{name:<{width}}  {scenario.description}")
        return 0
    try:
        targets = _targets(args, known)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "benchmarks", *arguments])
    options = Options(quick=args.quick, seed=args.seed)
    for scenario, path in targets:
        try:
            document = run_scenario(scenario, options, command)
        except ScenarioUnavailableError as exc:
            print(f"{parser.prog}: error: {scenario.name} scenario: {exc}", file=sys.stderr)
            return 2
        print(render_table(document))
        if path is not None:
            svg = _write(document, path)
            print(f"\nwrote {path} and {svg}")
        print()
    return 0
