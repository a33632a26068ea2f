"""How many photos per second at what tail latency: the engines under MLPerf LoadGen's scenarios.

    python -m benchmark.load --model selfie_segmenter --engines litert,tvm-tuned [--layouts 1x2,2x1]
    python -m benchmark.load --bot          # the bot's model, engines' layout and reply work

Per engine and layout (INSTANCESxTHREADS), each in a fresh process: SingleStream (one photo at a time;
checked against the benchmark's p50/p90), Offline (photos/s with every photo queued) and Server (the
highest Poisson arrival rate whose p99 stays under the bound, by bisection up to the Offline
throughput). Writes results/<model>/<target>/throughput.json, throughput.md, the plot and LoadGen's
logs (throughput_bot.* with --bot); the model's report.md gains the section when it is rendered again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from runtime.acquire import ALL, AUTO, resolve_model, twin_of
from runtime.artifacts import report_dir
from runtime.engines import ENGINE_NAMES, LITERT, TVM_TUNED, engine_label
from runtime.errors import SelfieTvmError
from runtime.registry import registry
from runtime.target import host_target

from ..options import choose_models
from . import section
from .configuration import Configuration, Request, measure_in_fresh_process
from .driver import require_loadgen
from .options import (
    BOUND_FACTOR,
    DEFAULT_LAYOUTS,
    OFFLINE,
    SCENARIOS,
    SERVER,
    SINGLE_STREAM,
    TWIN_BOUND_MS,
    WORKS,
    Layout,
    LoadOptionError,
    RunSettings,
    bound_ms,
    check_rate,
    parse_layouts,
    parse_rates,
    parse_scenarios,
)

# The bot's reply-time bound under load (its /segmentation reply on the reply lane, p99), for --bot.
BOT_BOUND_MS = 1000.0
# The bot's default threads per engine (bot/settings.py `threads`; benchmark/ never imports bot/, and
# tests/test_load.py keeps the two equal).
BOT_THREADS = 2


def bot_layout() -> tuple[str, Layout]:
    """The bot's default model and layout: the main model's twin, and one reply lane running the answering
    engine with BOT_THREADS threads (bot/settings.py, bot/lanes.py)."""
    return twin_of(registry().default).name, Layout(1, BOT_THREADS)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark.load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=AUTO,
                   help=f"registry name, a .tflite file, {AUTO} (default), several names comma-separated, or {ALL}: "
                        "every registry model available here")
    p.add_argument("--engines", default=f"{LITERT},{TVM_TUNED}",
                   help=f"comma-separated, from {', '.join(ENGINE_NAMES)} (default: %(default)s)")
    p.add_argument("--layouts", default=None,
                   help=f"comma-separated INSTANCESxTHREADS (default {DEFAULT_LAYOUTS}; with --bot the bot's)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, from: %(default)s")
    p.add_argument("--p99-bound-ms", type=float, default=None,
                   help=f"Server p99 bound (default: {TWIN_BOUND_MS:g} ms for a twin, {BOUND_FACTOR:g} x the slowest "
                        f"configuration's SingleStream p99 for another model, {BOT_BOUND_MS:g} ms with --bot)")
    p.add_argument("--rates", default=None, help="Server at these photos/s instead of the search (comma-separated)")
    p.add_argument("--work", choices=WORKS, default=None,
                   help="what a query does (default inference; with --bot the bot's reply)")
    p.add_argument("--min-duration-s", type=float, default=RunSettings.min_duration_s,
                   help="each LoadGen run lasts at least this long (default %(default)s)")
    p.add_argument("--min-queries", type=int, default=RunSettings.min_queries,
                   help="...and this many queries (default %(default)s; about 660 let LoadGen's early stopping "
                        "estimate a p99)")
    p.add_argument("--search-steps", type=int, default=RunSettings.search_steps,
                   help="Server runs of the bisection at most (default %(default)s)")
    p.add_argument("--bot", action="store_true",
                   help="the bot's model (unless --model), one instance with its threads, its reply as the work")
    p.add_argument("--out", type=Path, default=None, help="directory (default results/<model>/<target>/)")
    return p


def measure_all(model, configurations: list[Configuration], settings: RunSettings, scenarios: list[str],
                logs: Path, *, bound: float | None, bound_rule: str, rates: list[float],
                engine_options: dict | None = None, log=print) -> dict:
    """Every configuration in fresh processes: SingleStream and Offline first, then (the bound known) Server."""
    results = {c.name: {"configuration": c.name, "engine": c.engine, "instances": c.layout.instances,
                        "threads": c.layout.threads} for c in configurations}

    def request(c: Configuration, which: tuple[str, ...], **kw) -> None:
        if "error" in results[c.name]:
            return
        log(f"{c.name}: {', '.join(which)}")
        try:
            results[c.name].update(measure_in_fresh_process(
                Request(model, c, settings, which, logs, engine_options=engine_options or {}, **kw)))
        except SelfieTvmError as e:
            if isinstance(e, LoadOptionError):
                raise
            results[c.name]["error"] = f"not measured: {e}"
            log(f"{c.name}: {results[c.name]['error']}")

    def check_any_measured() -> None:
        if all("error" in r for r in results.values()):
            raise SelfieTvmError("no configuration could be measured: " + "; ".join(
                f"{name}: {r['error']}" for name, r in results.items()))

    first = tuple(s for s in (SINGLE_STREAM, OFFLINE) if s in scenarios)
    if first:
        for c in configurations:
            request(c, first)
        check_any_measured()
    if bound is None and SERVER in scenarios:
        bound = bound_ms(model.spec.synthetic, [r[SINGLE_STREAM]["p99_ms"] for r in results.values()
                                                if SINGLE_STREAM in r])
    if SERVER in scenarios:
        for c in configurations:
            ceiling = results[c.name].get(OFFLINE, {}).get("photos_per_s")
            request(c, (SERVER,), bound_ms=bound, rates=tuple(rates), ceiling=ceiling)
    check_any_measured()
    return {"bound_ms": bound, "bound_rule": bound_rule, "configurations": list(results.values())}


def _bound_rule(given: float | None, bot: bool, synthetic: bool) -> str:
    if given is not None:
        return "given with --p99-bound-ms"
    if bot:
        return "the bot's reply-time bound under load (benchmark/load/__main__.py BOT_BOUND_MS)"
    if synthetic:
        return "the twin's default"
    return f"{BOUND_FACTOR:g} x the slowest configuration's SingleStream p99"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = shlex.join(["python", "-m", "benchmark.load", *(sys.argv[1:] if argv is None else argv)])
    try:
        model_names, layouts = args.model, None
        if args.bot:
            bot_model, bot_layout_ = bot_layout()
            model_names = bot_model if args.model == AUTO else args.model
            layouts = [bot_layout_]
        layouts = parse_layouts(args.layouts) if args.layouts else layouts or parse_layouts(DEFAULT_LAYOUTS)
        scenarios = parse_scenarios(args.scenarios)
        rates = parse_rates(args.rates) if args.rates else []
        if SERVER in scenarios and OFFLINE not in scenarios and not rates:
            raise LoadOptionError("the Server search climbs up to the Offline throughput: add the offline scenario, "
                                  "or give --rates")
        given = check_rate(args.p99_bound_ms, "--p99-bound-ms") if args.p99_bound_ms is not None else None
        engines = [e.strip() for e in args.engines.split(",")]
        for e in engines:
            engine_label(e)  # an unknown engine: one line naming the known ones
        settings = RunSettings(work=args.work or ("reply" if args.bot else "inference"),
                               min_duration_s=args.min_duration_s, min_queries=args.min_queries,
                               search_steps=args.search_steps)
        models = (choose_models(model_names)[0] if model_names == ALL or "," in model_names
                  else [resolve_model(model_names)])
        if args.out and len(models) > 1:
            raise LoadOptionError("--out names one model's directory: measure one model, or leave --out out")
        require_loadgen()
    except SelfieTvmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for model in models:
        try:
            run_model(model, args, engines, layouts, scenarios, settings, rates, given, command)
        except SelfieTvmError as e:
            print(f"error: {model.spec.name}: {e}" if len(models) > 1 else f"error: {e}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def run_model(model, args, engines: list[str], layouts: list[Layout], scenarios: list[str], settings: RunSettings,
              rates: list[float], given: float | None, command: str) -> Path:
    """Measure one model's configurations, save the run, render its page and its report again."""
    bound = BOT_BOUND_MS if args.bot and given is None else given
    if bound is None and SERVER in scenarios and SINGLE_STREAM not in scenarios and not model.spec.synthetic:
        raise LoadOptionError(f"the Server bound of {model.spec.name} is scaled from its SingleStream p99: add the "
                              "singlestream scenario, or give --p99-bound-ms")
    out = args.out or report_dir(model.spec.name, host_target())
    stem = Path(section.BOT_SAVED if args.bot else section.SAVED).stem
    configurations = [Configuration(e, layout) for e in engines for layout in layouts]
    logs, partial = out / f"{stem}_loadgen", out / f".{stem}_loadgen.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        measured = measure_all(model, configurations, settings, scenarios, partial, bound=bound,
                               bound_rule=_bound_rule(given, args.bot, model.spec.synthetic), rates=rates)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(logs, ignore_errors=True)  # an earlier run's logs (of other layouts too) go with it
    partial.rename(logs)
    saved = write_run(out, stem, model, engines, settings, scenarios, measured, bot=args.bot, command=command)
    print(f"load run: {saved}\nthroughput: {section.render(saved)}")
    rerender_report(out)
    return saved


def write_run(out: Path, stem: str, model, engines: list[str], settings: RunSettings, scenarios: list[str],
              measured: dict, *, bot: bool, command: str) -> Path:
    from benchmark.machine import capture

    out.mkdir(parents=True, exist_ok=True)
    run = {"model": model.spec.name, "synthetic": bool(model.spec.synthetic), "bot": bot, "command": command,
           "date": datetime.now(UTC).isoformat(timespec="seconds"), "loadgen": version("mlcommons-loadgen"),
           "machine": capture(model, engines), "work": settings.work, "settings": asdict(settings),
           "scenarios": scenarios, **measured}
    saved = out / f"{stem}.json"
    saved.write_text(json.dumps(run, indent=1, allow_nan=True) + "\n")
    return saved


def rerender_report(out: Path) -> None:
    """The model's report.md gains (or updates) its throughput section: rendered again from its saved run."""
    if not (out / "benchmark.json").is_file():
        return
    from benchmark.report import write_report

    try:
        print(f"report: {write_report(out / 'benchmark.json', out)}")
    except (ValueError, SelfieTvmError) as e:  # the load run stands on its own
        print(f"report.md not rendered again: {e}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
