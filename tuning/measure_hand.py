"""Time the hand-written schedules against each kernel's record, kernel by kernel, in one run: every depthwise
tile on depthwise kernels, the default schedule on every kernel.

    TVM_NUM_THREADS=2 python -m tuning.measure_hand --model selfie_multiclass_twin [--portable] \\
        --rounds 9 --out DIR [--choose]

Writes DIR/hand_<isa>_<threads>t.csv (p50 of interleaved rounds, microseconds, every candidate) and
prints a markdown table. `--choose` also writes the kernels where a hand schedule won (by
hand_schedules.MARGIN) into the record set's hand_schedules.json, which later builds apply.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import tvm
from tvm.s_tir import meta_schedule as ms

from runtime.acquire import AUTO, resolve_model
from runtime.target import host_target, portable_target

from .build import selected_records, tuning_module
from .hand_schedules import choose, measure, read_choices, updated_choices, write_choices
from .records import isa_level, resolve_records

log = logging.getLogger(__name__)
_LANES = {"avx512": 16, "avx2": 8}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=AUTO, help="default: the registry's default model, else its twin")
    parser.add_argument("--portable", action="store_true", help="the x86-64-v3 (AVX2) build instead of the host's")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--choose", action="store_true", help="write the winners into the records' hand_schedules.json")
    parser.add_argument("--no-default", action="store_true",
                        help="depthwise tiles only (the default schedule is not a candidate)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    threads = int(tvm.get_global_func("runtime.NumThreads")())
    target = portable_target() if args.portable else host_target()
    model = resolve_model(args.model)
    records = resolve_records(model.spec.name, target)
    mod = tuning_module(model, target, records.provenance.graph_options)
    with selected_records(records.path, target) as selected:
        db = ms.database.JSONDatabase(work_dir=str(selected), allow_missing=False,
                                      module_equality=records.provenance.module_equality)
        timings = measure(mod, target.to_tvm(), db, _LANES[target.vector_isa], args.rounds, log.info,
                          cores=None if args.no_default else target.num_cores)
    rows = [{"kernel": t.kernel, "shape": t.shape, "record_us": t.record_us, "best_tile": t.best_tile(),
             "hand_us": t.hand_us[t.best_tile()],
             "hand_vs_record": t.hand_us[t.best_tile()] / t.record_us if t.record_us else None,
             **{f"tile_{name}": us for name, us in t.hand_us.items()}} for t in timings]
    table = pd.DataFrame(rows)
    isa = isa_level(target)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / f"hand_{isa}_{threads}t.csv"
    table.to_csv(csv, index=False, float_format="%.1f")
    print(f"{isa} ({target.mcpu}), {threads} threads, p50 of {args.rounds} interleaved rounds:\n")
    print(table[["kernel", "shape", "record_us", "best_tile", "hand_us", "hand_vs_record"]]
          .to_markdown(index=False, floatfmt=".2f"))
    print(f"\nrecord total {table.record_us.sum():.0f} us, best per kernel "
          f"{table[['record_us', 'hand_us']].min(axis=1).sum():.0f} us; {csv}")
    if args.choose:
        choices = choose(timings, cpu=host_target().mcpu, threads=threads)  # the measuring host, also for --portable
        path = write_choices(records.path, updated_choices(read_choices(records.path), timings, choices))
        print(f"{len(choices)} of {len(timings)} kernels take the hand schedule: {path}")


if __name__ == "__main__":
    main()
