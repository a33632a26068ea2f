"""LiteRT's per-operator profile of a model, and the gap to a TVM library kernel by kernel.

    python -m benchmark.op_profile --model selfie_multiclass_twin --threads 1,2 --litert-isa avx2 \\
        --library tvm_model/selfie_multiclass_twin/<target>/tuned.so --out /tmp/op_profile

LiteRT's Python API has no per-operator profiler and the benchmark_model tool is not shipped, so each
operator is timed on its own: a single-operator .tflite with the same operator, options and constant
tensors (benchmark/single_op.py), its other inputs fed random values, run through the same LiteRT path
as LiteRTEngine (default resolver, XNNPACK, the same threads and ISA limit). The whole model is timed
in the same process, by default interleaved with the operators as the ablation interleaves variants:
`--repeats` rounds, each running the whole model and every operator once in a rotated order, each run
started once the process's other threads are idle (benchmark/idle.py); medians after `--warmup` runs.
`--order consecutive` times each one's runs back to back instead. The sum of the operators over the whole
model is reported: an operator timed alone misses what it gains or loses inside the model (its input
still in cache from its producer; XNNPACK's thread-pool handoffs between operators). Interleaved, the
operators run in between evict its data and weights; consecutive, they stay cached. The sum is a
sanity check, not an identity. A DEQUANTIZE of constant weights is folded by XNNPACK at load time
and counted as 0 ms (alone it does not run).

With `--library`, the library's per-kernel profile inside the whole model (benchmark/profile.py) is
joined with LiteRT's by signature (benchmark/gap_table.py): LiteRT's operators are grouped as TVM fuses
them (a convolution and the ADD / MUL after it, a chain of reshapes and transposes; see
`SingleOpModels.groups`) and both sides are named by their anchor's signature, so a fused
conv + bias + ReLU + residual kernel faces CONV_2D + ADD. TVM's times are in-model means of the
instrumented run, LiteRT's single-operator medians.

Each (ISA, thread count) runs in a fresh process, as the ablation does (a pool resized earlier in a
process slowed LiteRT about 2x, and the AVX2 limit holds for a whole process); TVM's profile at each
thread count runs in a process of its own too. Writes into --out: litert_ops.csv (every operator),
gap.csv and gap_kinds.csv (with --library) and op_profile.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.idle import wait_until_idle
from runtime.acquire import AUTO, ResolvedModel
from runtime.artifacts import LibraryMetadata, check_metadata
from runtime.engines.litert_isa import AVX2, ISA_LEVELS, NATIVE, check_limited, xnnpack_arch_flags
from runtime.errors import SelfieTvmError

from . import gap_table
from .single_op import SingleOpModels, signature

WHOLE = "whole model"
INTERLEAVED, CONSECUTIVE = "interleaved", "consecutive"
ORDERS = (INTERLEAVED, CONSECUTIVE)
ORDER_TEXT = {INTERLEAVED: "rounds over all of them", CONSECUTIVE: "each one's runs back to back"}
OPS_CSV, GAP_CSV, KINDS_CSV, MARKDOWN = "litert_ops.csv", "gap.csv", "gap_kinds.csv", "op_profile.md"
CAVEAT = ("Each LiteRT operator is timed alone, as a single-operator model: it misses what it gains or loses "
          "inside the whole model (its input still in cache from its producer; XNNPACK's pool handoffs between "
          "operators). Timed interleaved (rounds over every operator and the whole model) it finds its data and "
          "weights evicted by the others, timed consecutively it finds them cached: the sum of the operators "
          "over the whole model, below, says how far this run is from the model. TVM's kernels are timed inside "
          "the whole model (mean of instrumented runs).")


class OpProfileError(SelfieTvmError):
    pass


def medians(runs: dict[object, Callable[[], object]], repeats: int, warmup: int, order: str = INTERLEAVED
            ) -> dict[object, float]:
    """Median ms of each run over `repeats` timed calls, after `warmup` untimed calls each; each timed call
    starts after the idle wait. INTERLEAVED: every round calls each run once, in an order rotated by one per
    round (as the ablation does), so drift and other load hit all alike, and each run finds the caches as
    the others left them. CONSECUTIVE: each run's calls back to back, its own data and weights still cached."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    keys = list(runs)
    if order == INTERLEAVED:
        sequence = [key for r in range(repeats) for key in keys[r % len(keys):] + keys[: r % len(keys)]]
    else:
        sequence = [key for key in keys for _ in range(repeats)]
    samples: dict[object, list[float]] = {k: [] for k in keys}
    for key in sequence:
        wait_until_idle()
        t0 = time.perf_counter()
        runs[key]()
        samples[key].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def _feed(interp, rng: np.random.Generator) -> None:
    for detail in interp.get_input_details():
        interp.set_tensor(detail["index"], rng.random(detail["shape"]).astype(detail["dtype"]))


@dataclass(frozen=True)
class LiteRTProfile:
    ops: pd.DataFrame  # one row per operator
    whole_ms: float

    @property
    def ops_ms(self) -> float:
        return float(self.ops["ms"].sum())


def litert_profile(model: ResolvedModel, threads: int, isa: str, repeats: int, warmup: int,
                   order: str = INTERLEAVED) -> LiteRTProfile:
    """Every operator of the model timed alone, and the whole model, in this process (call it in a fresh
    one: the AVX2 limit must come before any interpreter)."""
    from runtime.engines.litert import LiteRTEngine, interpreter

    engine = LiteRTEngine(model, threads, isa=isa)  # the first interpreter of the process: it applies `isa`
    rng = np.random.default_rng(0)
    spec = model.spec.input
    x = rng.random((1, spec.height, spec.width, spec.channels), dtype=np.float32)
    graph = SingleOpModels(model.path.read_bytes())
    runs: dict[object, Callable[[], object]] = {WHOLE: lambda: engine.run(x)}
    for i, op in enumerate(graph.ops):
        if graph.is_folded(i):
            continue
        try:
            interp = interpreter(graph.single_op_model(i), threads)
        except (RuntimeError, ValueError) as e:
            raise OpProfileError(f"operator {i} ({op.name}) of {model.spec.name} does not run alone in LiteRT: "
                                 f"{e}") from e
        _feed(interp, rng)
        runs[i] = interp.invoke
    timed = medians(runs, repeats, warmup, order)
    rows = []
    for i, op in enumerate(graph.ops):
        sig, group, op_macs, ms = signature(op), graph.groups[i], op.macs, timed.get(i, 0.0)
        group_sig = graph.group_signature(group)
        rows.append({"isa": isa, "threads": threads, "order": order, "index": i, "op": op.name, "kind": sig.kind,
                     "signature": sig.text,
                     "inputs": " ".join("x".join(map(str, s)) for s in op.input_shapes),
                     "stride": sig.stride or None, "macs": op_macs, "ms": ms,
                     "gflops": 2 * op_macs / ms / 1e6 if op_macs and ms else None, "folded": graph.is_folded(i),
                     "group": group, "group_kind": group_sig.kind, "group_signature": group_sig.text})
    if isa == AVX2:  # every single-operator interpreter ran the AVX2 kernels too
        check_limited(xnnpack_arch_flags())
    return LiteRTProfile(pd.DataFrame(rows), timed[WHOLE])


def tvm_profile(model: ResolvedModel, library: Path, threads: int, repeats: int) -> pd.DataFrame:
    """The library's per-kernel profile inside the whole model (benchmark/profile.py), each kernel with its
    signature; TVM's VM builtins as `tvm-runtime`. In this process (call it in a fresh one)."""
    from runtime.engines.tvm import set_tvm_threads
    from tuning.build import tuning_module
    from tuning.importer import TUNED_GRAPH, GraphOptions

    from . import profile
    from .kernel_signature import module_kernel_signatures

    set_tvm_threads(threads)
    meta = library_metadata(library, model)
    graph = GraphOptions(**meta.graph) if meta.graph else TUNED_GRAPH
    mod = tuning_module(model, meta.target_spec, graph)  # the module the library was built from: imported once
    signatures = module_kernel_signatures(mod)
    spec = model.spec.input
    x = np.random.default_rng(0).random((1, spec.height, spec.width, spec.channels), dtype=np.float32)
    table = profile.profile(library, x, profile.module_kernel_flops(mod), repeats)
    known = [signatures.get(kernel) for kernel in table["kernel"]]
    table["signature"] = [s.text if s is not None else gap_table.RUNTIME for s in known]
    table["kind"] = [s.kind if s is not None else gap_table.RUNTIME for s in known]
    table["threads"] = threads
    return table


def in_fresh_process(fn: Callable, *args):
    """fn(*args) in a new interpreter process (spawned: nothing of this one's LiteRT or TVM state)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def library_metadata(library: Path, model: ResolvedModel) -> LibraryMetadata:
    """The metadata beside a library of `model` (`tuned.so` -> `tuned.json`); one clear error when either is
    missing or the library was built from another model file."""
    path = library.with_suffix(".json")
    if not library.is_file() or not path.is_file():
        raise OpProfileError(f"{library} and its metadata {path.name} beside it must both exist (a library exported "
                             "by `selfie-tvm compile`)")
    meta = LibraryMetadata.read(path)
    check_metadata(meta, model.spec.name, model.sha256(), None, library)
    return meta


def library_header(library: Path, model: ResolvedModel) -> str:
    meta = library_metadata(library, model)
    provenance = meta.records_provenance or {}
    return (f"TVM library: `{library}` ({meta.kind}, target {meta.target_spec.id}, records ISA level "
            f"{provenance.get('isa', 'unknown')}, built {meta.built_at})")


def _table(df: pd.DataFrame) -> str:
    """Markdown with empty cells where a value does not exist (no LiteRT time, no FLOPs)."""
    return df.astype(object).where(df.notna(), None).to_markdown(index=False, floatfmt=".3f", missingval="")


def markdown(model: ResolvedModel, isa: str, repeats: int, warmup: int, order: str, library: Path | None,
             sections: list[tuple[int, LiteRTProfile, pd.DataFrame | None]]) -> str:
    from runtime.target import cpu_model_name

    isa_text = ("avx2 (XNNPACK limited to its AVX2 kernels on this host, runtime/engines/litert_isa.py)"
                if isa == AVX2 else "native (the kernels XNNPACK picks for this CPU)")
    lines = [f"# Per-operator profile: {model.spec.name}", "",
             f"- CPU: {cpu_model_name()}", f"- LiteRT ISA: {isa_text}",
             f"- Threads: {', '.join(str(t) for t, _, _ in sections)}",
             f"- LiteRT: median of {repeats} runs after {warmup} warm-up runs per operator and for the whole model, "
             f"timed {order} ({ORDER_TEXT[order]})",
             f"- {library_header(library, model)}" if library else "- TVM library: none (LiteRT only)",
             f"- Measured: {datetime.now(UTC).isoformat(timespec='seconds')}", "", CAVEAT, ""]
    for threads, lite, gap in sections:
        lines += [f"## {threads} thread{'s' if threads > 1 else ''}, LiteRT ISA {isa}", "",
                  f"LiteRT whole model {lite.whole_ms:.3f} ms; sum of its {len(lite.ops)} operators timed alone "
                  f"{lite.ops_ms:.3f} ms (sum / whole = {lite.ops_ms / lite.whole_ms:.2f}).", ""]
        if gap is None:
            ops = lite.ops.sort_values("ms", ascending=False, kind="stable")
            lines += ["### Operators (slowest first)", "",
                      _table(ops[["index", "op", "signature", "macs", "ms", "gflops", "group"]]), ""]
            continue
        kinds = gap_table.by_kind(gap)
        total = kinds.iloc[-1]
        lines += [f"TVM kernels {total.tvm_ms:.3f} ms vs LiteRT operators {total.litert_ms:.3f} ms: "
                  f"ratio {total.ratio:.2f}, gap {total.gap_ms:+.3f} ms (TVM kernels / LiteRT whole model "
                  f"{total.tvm_ms / lite.whole_ms:.2f}).", "", "### By kind", "",
                  _table(kinds.drop(columns="macs")), "",
                  "### By signature (largest gap first)", "",
                  _table(gap.drop(columns=["macs", "tvm_kernels"])), ""]
    return "\n".join(lines)


def run(model: ResolvedModel, threads: list[int], isa: str, repeats: int, warmup: int, library: Path | None,
        out: Path, order: str = INTERLEAVED) -> Path:
    """Measure, join and write; returns the markdown's path."""
    if library is not None:
        library_metadata(library, model)  # before minutes of measuring
    sections, op_tables, gaps, kind_tables = [], [], [], []
    for n in threads:
        lite = in_fresh_process(litert_profile, model, n, isa, repeats, warmup, order)
        op_tables.append(lite.ops)
        gap = None
        if library is not None:
            kernels = in_fresh_process(tvm_profile, model, library, n, repeats)
            gap = gap_table.gap_table(gap_table.litert_groups(lite.ops), kernels)
            gaps.append(gap.assign(threads=n))
            kind_tables.append(gap_table.by_kind(gap).assign(threads=n))
        sections.append((n, lite, gap))
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(op_tables, ignore_index=True).to_csv(out / OPS_CSV, index=False, float_format="%.5g")
    if gaps:
        pd.concat(gaps, ignore_index=True).to_csv(out / GAP_CSV, index=False, float_format="%.5g")
        pd.concat(kind_tables, ignore_index=True).to_csv(out / KINDS_CSV, index=False, float_format="%.5g")
    path = out / MARKDOWN
    path.write_text(markdown(model, isa, repeats, warmup, order, library, sections))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.op_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=AUTO,
                   help=f"registry name or .tflite path (default {AUTO}: the registry default if it can be had, "
                        "else its twin)")
    p.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2 (default 1)")
    p.add_argument("--litert-isa", choices=ISA_LEVELS, default=NATIVE,
                   help="avx2: LiteRT runs only its AVX2 kernels (to compare x86-64-v3 TVM libraries on an "
                        "AVX-512 host; runtime/engines/litert_isa.py)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per operator (median; default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--order", choices=ORDERS, default=INTERLEAVED,
                   help="interleaved (default): rounds over the whole model and every operator, as the ablation "
                        "does; consecutive: each operator's runs back to back (its data cached)")
    p.add_argument("--library", type=Path, help="a TVM library (.so with its .json beside it) to join with")
    p.add_argument("--out", type=Path, required=True, help=f"writes {OPS_CSV}, {GAP_CSV}, {KINDS_CSV}, {MARKDOWN}")
    args = p.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if any(t < 1 for t in threads) or args.repeats < 1 or args.warmup < 0:
        p.error("threads and --repeats must be at least 1, --warmup at least 0")
    try:
        from runtime.acquire import resolve_model

        model = resolve_model(args.model)  # each process profiles the model resolved here
        path = run(model, threads, args.litert_isa, args.repeats, args.warmup, args.library, args.out, args.order)
    except SelfieTvmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
