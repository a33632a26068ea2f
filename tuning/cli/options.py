"""Options shared by the TVM verbs: model and target."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from runtime.acquire import ALL, AUTO
from runtime.cli.common import positive_int


def add_target_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target (default: this machine)")
    g.add_argument("--mcpu", default=None, help="LLVM CPU name, e.g. znver3, skylake-avx512 (default: detected)")
    g.add_argument("--num-cores", type=positive_int, default=None, help="cores to compile and tune for (default: all)")
    g.add_argument("--mtriple", default=None, help="LLVM target triple (default: x86_64-linux-gnu, as the seed)")
    g.add_argument("--portable", action="store_true",
                   help="target a generic x86-64-v3 CPU (AVX2+FMA): the libraries run on any AVX2 machine")


def add_model_option(p: argparse.ArgumentParser, all_models: bool = False) -> None:
    every = f"; {ALL}: every model available without a download, one after another" if all_models else ""
    p.add_argument("--model", default=AUTO,
                   help=f"registry model name (default {AUTO}: the registry default if it can be had, else its "
                        f"twin{every})")
    p.add_argument("--model-path", type=Path, default=None, metavar="FILE",
                   help="a .tflite file: alone, any segmentation model (a registry model's file is recognised by "
                        "its name); with --model, that model's file instead of the one it would look up")


def rpc_tracker(text: str) -> str:
    """argparse type for --rpc-tracker: HOST:PORT."""
    from tuning.farm import split_host_port

    try:
        split_host_port(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--rpc-tracker ")) from None
    return text


def ensure_tvm_threads(num_cores: int | None) -> None:
    """TVM reads TVM_NUM_THREADS once, when its thread pool starts; unset, these VMs get 1 thread."""
    os.environ.setdefault("TVM_NUM_THREADS", str(num_cores or len(os.sched_getaffinity(0))))


def target_from(args, device_cpu: str | None = None, device_threads: int | None = None):
    """The target given by the options; for a farm (`device_cpu`, `device_threads`: what its devices
    report) the devices' CPU and thread count stand in for this host's where no option says."""
    from runtime.target import host_target

    cores = args.num_cores or device_threads
    if getattr(args, "portable", False):
        from runtime.target import portable_target

        return portable_target(cores)
    host = host_target(args.mcpu, cores, args.mtriple)
    if device_cpu is None or args.mcpu is not None or device_cpu == host.mcpu:
        return host  # the same CPU as here keeps this host's corrections for features a VM hides
    return host_target(device_cpu, cores, args.mtriple)
