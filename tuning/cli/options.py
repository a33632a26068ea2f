"""Options shared by the TVM verbs: model and target."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_target_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target (default: this machine)")
    g.add_argument("--mcpu", default=None, help="LLVM CPU name, e.g. znver3, skylake-avx512 (default: detected)")
    g.add_argument("--num-cores", type=int, default=None, help="cores to compile and tune for (default: all)")
    g.add_argument("--mtriple", default=None, help="LLVM target triple (default: x86_64-linux-gnu, as the seed)")


def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="selfie_multiclass_twin", help="registry model name")
    p.add_argument("--model-path", type=Path, default=None, help="explicit .tflite file for --model")


def ensure_tvm_threads(num_cores: int | None) -> None:
    """TVM reads TVM_NUM_THREADS once, when its thread pool starts; unset, these VMs get 1 thread."""
    os.environ.setdefault("TVM_NUM_THREADS", str(num_cores or len(os.sched_getaffinity(0))))


def target_from(args):
    from runtime.target import host_target

    return host_target(args.mcpu, args.num_cores, args.mtriple)
