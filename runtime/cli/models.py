"""`selfie-tvm models`: the registry and where each model would come from."""

from __future__ import annotations

from ..acquire import resolve_model
from ..errors import SelfieTvmError
from ..registry import registry


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered models and their availability",
                       description="List the registered models: classes, input size, licence, and whether each "
                                   "is here (SELFIE_TVM_MODELS_DIR or the cache) or would be downloaded.")
    p.add_argument("--fetch", metavar="NAME",
                   help="download (or, for a twin, generate) one model into the cache, e.g. before going offline")
    p.set_defaults(run=run)


def run(args) -> int:
    reg = registry()
    if args.fetch:
        resolved = resolve_model(args.fetch)
        print(f"{resolved.spec.name}: {resolved.path} ({resolved.source})")
        return 0
    for name, spec in sorted(reg.models.items()):
        try:
            where = f"{resolve_model(name, allow_download=False).path}"
        except SelfieTvmError:
            where = "not available locally (will download)" if spec.url else "unavailable"
        default = " [default]" if name == reg.default else ""
        synthetic = " [synthetic weights]" if spec.synthetic else ""
        print(f"{name}{default}{synthetic}: {spec.num_classes} classes, input "
              f"{spec.input.height}x{spec.input.width}; {where}")
        print(f"    {spec.description}" + (f" ({spec.license})" if spec.license else ""))
    return 0
