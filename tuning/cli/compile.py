"""`selfie-tvm compile`: export default.so (untuned) and, with --tuned, tuned.so from records."""

from __future__ import annotations

from pathlib import Path

from .options import add_model_option, add_target_options, ensure_tvm_threads, target_from


def register(sub) -> None:
    p = sub.add_parser("compile", help="compile a model with TVM and export shared libraries")
    add_model_option(p)
    add_target_options(p)
    p.add_argument("--tuned", action="store_true", help="also build tuned.so from tuning records")
    p.add_argument("--records", type=Path, default=None,
                   help="tuning records directory (default: results/tuning/<ISA level>, e.g. x86-64-v3 for AVX2)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: tvm_model/<model>/<target>)")
    p.set_defaults(run=run)


def run(args) -> int:
    ensure_tvm_threads(args.num_cores)
    from runtime.acquire import resolve_model
    from runtime.artifacts import LibraryMetadata, library_paths
    from tuning.build import export
    from tuning.records import describe_use, resolve_records

    model = resolve_model(args.model, path=args.model_path)
    target = target_from(args)
    print(f"compiling {model.spec.name} for {target.id} ({target.to_tvm()})")
    if args.tuned:  # first: without records it stops at once, before a long untuned build
        records = resolve_records(model.spec.name, target, args.records)
        print("\n".join(describe_use(records, target)))
        lib = export(model, target, "tuned", records=records, out_root=args.out)
        print(f"wrote {lib}")
        meta = LibraryMetadata.read(library_paths(lib.parent, "tuned")[1])
        if meta.hand_scheduled_kernels:
            print(f"{len(meta.hand_scheduled_kernels)} kernels with a hand schedule (depthwise tiles or the default "
                  f"schedule), measured faster than their records (hand_schedules.json beside the records)")
        warning = meta.tuning_warning
        if warning:
            print(f"warning: {warning}; tune here with `selfie-tvm tune --model {model.spec.name}`")
    print(f"wrote {export(model, target, 'default', out_root=args.out)}")
    if model.spec.synthetic_notice:
        print(f"note: {model.spec.synthetic_notice}")
    return 0
