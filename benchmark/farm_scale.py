"""Trials per minute when tuning on 1 and on 2 RPC devices of a local farm (README "Tuning on a farm").

Each device is an RPC server pinned to its own core with one TVM thread; the same model and kernels,
the same budget and seed, a fresh record set for each device count. The tuner itself (search, cost
model, builds) runs here too, on the same cores: the share of the run spent measuring (the farm
runner's own count of the time its batches were on the devices) says how much more devices can give.

    python -m benchmark.farm_scale --budget 40 --devices 1,2 --only fused_conv2d
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from runtime.acquire import AUTO, resolve_model
from runtime.target import host_target
from tuning.build import tuning_module
from tuning.local_farm import LocalFarm
from tuning.tune import tune


class _MeasuringTime(logging.Handler):
    """Keeps the farm runner's figure for the time its batches were on the devices (sent with its last record)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "measuring_s"):
            self.seconds = float(record.measuring_s)


def measure(devices: int, budget: int, per_iter: int, model: str, only: list[str] | None, work: Path) -> dict:
    target = host_target()
    mod = tuning_module(resolve_model(model), target)
    handler = _MeasuringTime()
    farm_log = logging.getLogger("tuning.farm")
    farm_log.addHandler(handler)
    farm_log.setLevel(logging.INFO)
    try:
        with LocalFarm(devices, key=f"scale-{devices}") as farm:
            result = tune(mod, target.to_tvm(), work / f"records-{devices}", budget=budget, per_iter=per_iter,
                          rpc=farm.spec, progress=False, only=only)
    finally:
        farm_log.removeHandler(handler)
    if handler.seconds is None:
        raise RuntimeError("the farm runner did not report how long its batches were on the devices")
    return {"devices": devices, "trials": result.trials_run, "seconds": round(result.seconds, 1),
            "trials_per_min": round(result.trials_run / result.seconds * 60, 1),
            "measuring_s": round(handler.seconds, 1), "measuring_share": round(handler.seconds / result.seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=40)
    p.add_argument("--per-iter", type=int, default=8)
    p.add_argument("--devices", default="1,2", help="device counts to compare, e.g. 1,2")
    p.add_argument("--model", default=AUTO, help=f"registry name or .tflite path (default {AUTO}: the main model if "
                   "it can be had, else its architecture twin)")
    p.add_argument("--only", action="append", default=None, metavar="KERNEL",
                   help="tune only kernels whose name starts with this (repeatable; default: every kernel)")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="farm-scale-") as tmp:
        for n in (int(d) for d in args.devices.split(",")):
            rows.append(measure(n, args.budget, args.per_iter, args.model, args.only, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
