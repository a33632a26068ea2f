"""`selfie-tvm records`: the committed tuning record sets; `records merge DIR` brings in records tuned elsewhere."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("records", help="show the committed tuning record sets, or merge records tuned elsewhere")
    actions = p.add_subparsers(dest="action", metavar="{show,merge}")
    actions.add_parser("show", help="each ISA level's set: records, kernels, measuring CPUs, where it was tuned "
                                    "(the default)")
    merge = actions.add_parser(
        "merge", help="add a records directory (another machine's, a --work-dir of your own) to the committed set "
                      "of its ISA level, keeping the best records of each kernel and CPU")
    merge.add_argument("source", type=Path, help="a MetaSchedule database directory (plain or .gz files)")
    p.set_defaults(run=run, action="show")


def run(args) -> int:
    return merge(args.source) if args.action == "merge" else show()


def show() -> int:
    from runtime.artifacts import describe_origins
    from tuning.database import is_generic_cpu, read_records
    from tuning.records import available_levels, read_provenance, records_root

    levels = available_levels()
    if not levels:
        print(f"no tuning records in {records_root()}: `selfie-tvm tune` makes them")
        return 0
    for isa in levels:
        path = records_root() / isa
        records = read_records(path)
        prov = read_provenance(path, isa)
        cpus = Counter(r.cpu or "?" for r in records)
        print(f"{isa} ({path}): {len(records)} records of {len({r.shash for r in records})} kernels, best of "
              f"{max(prov.trials_measured, len(records))} trials, {prov.tuning_seconds / 60:.0f} min of tuning, "
              f"updated {prov.updated_at[:10]}")
        unknown = " (portable, CPU not recorded)"
        print("  records measured on: " + ", ".join(f"{cpu}{unknown if is_generic_cpu(cpu) else ''} {n}"
                                                    for cpu, n in cpus.most_common()))
        print(f"  tuned on: {describe_origins(prov.origins)}")
        if prov.models:
            print(f"  models: {', '.join(prov.models)}")
    return 0


def merge(source: Path) -> int:
    from tuning.database import KEEP_PER_CPU
    from tuning.merge_records import merge_into_committed

    result = merge_into_committed(source)
    where = result.record_set.path
    if not result.kept:
        print(f"{source} brings nothing new to {where}: of its records, "
              + (f"{result.added} not there already are slower than the set's best {KEEP_PER_CPU} of their kernel "
                 "and CPU" if result.added else "every one is there already") + "; the set is unchanged")
        return 0
    faster = ", ".join(f"{n} on {cpu}" for cpu, n in result.faster.most_common()) or "none"
    print(f"merged {result.added} new records from {source} into {where}; {result.kept} kept after pruning "
          f"(the best of each kernel and CPU); kernels with a faster best record: {faster}")
    print(f"now: {result.record_set.summary()}")
    print("rebuild the tuned libraries to use them: `selfie-tvm compile --tuned` (or `./nox -s benchmark`)")
    return 0
