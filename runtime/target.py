"""The compilation target: the host CPU as LLVM sees it, corrected by what the kernel reports."""

from __future__ import annotations

import os
import platform
import re
from contextlib import suppress
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from .errors import TargetError

# Feature groups LLVM may assume for a CPU name that a hypervisor can still hide from the guest
# (LLVM says "znver4" on these VMs while /proc/cpuinfo has no avx512f: code for it would SIGILL).
_HIDEABLE = {
    "avx512f": "-avx512f",
    "avx2": "-avx2",
    "fma": "-fma",
}
SEED_TRIPLE = "x86_64-linux-gnu"  # what the seed project compiled for
PORTABLE_CPU = "x86-64-v3"  # AVX2+FMA: a library built for it runs on any AVX2 machine


@dataclass(frozen=True)
class TargetSpec:
    mcpu: str
    num_cores: int
    mtriple: str | None = None
    mattr: tuple[str, ...] = ()

    def to_tvm(self):
        import tvm

        config: dict = {"kind": "llvm", "mcpu": self.mcpu, "num-cores": self.num_cores}
        if self.mtriple:
            config["mtriple"] = self.mtriple
        if self.mattr:
            config["mattr"] = list(self.mattr)
        return tvm.target.Target(config)

    @cached_property
    def vector_isa(self) -> str:
        """Widest SIMD the *target* allows (its CPU name and -mattr), not what this host has."""
        from tvm.target import codegen

        target = self.to_tvm()
        for isa, feature in (("avx512", "avx512f"), ("avx2", "avx2")):
            if codegen.llvm_cpu_has_features([feature], target):
                return isa
        return "sse"

    @property
    def id(self) -> str:
        """A short, path-safe name for build outputs and results, e.g. znver4-avx2-2c."""
        triple = f"-{self.mtriple.split('-')[0]}" if self.mtriple and not self.mtriple.startswith("x86_64") else ""
        return f"{self.mcpu}-{self.vector_isa}{triple}-{self.num_cores}c"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["mattr"] = list(self.mattr)
        d["id"] = self.id
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TargetSpec:
        return cls(d["mcpu"], int(d["num_cores"]), d.get("mtriple"), tuple(d.get("mattr", ())))


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[dict[str, str], tuple[float, ...]]:
    """/proc/cpuinfo, read once: the first processor's fields and every processor's current MHz."""
    fields: dict[str, str] = {}
    mhz: list[float] = []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}, ()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        fields.setdefault(key, value)
        if key == "cpu MHz":
            with suppress(ValueError):
                mhz.append(float(value))
    return fields, tuple(mhz)


def cpu_flags() -> set[str]:
    return set(_cpuinfo()[0].get("flags", "").split())


def cpu_model_name() -> str:
    return _cpuinfo()[0].get("model name") or platform.processor() or "unknown"


def cpu_mhz() -> float | None:
    """The highest current clock any core reports, if the kernel says."""
    values = _cpuinfo()[1]
    return max(values) if values else None


def host_target(mcpu: str | None = None, num_cores: int | None = None, mtriple: str | None = None) -> TargetSpec:
    """Detect the host; any argument given overrides detection."""
    from tvm.target import codegen

    cpu = mcpu or codegen.llvm_get_system_cpu()
    mattr: tuple[str, ...] = ()
    if mcpu is None:
        flags = cpu_flags()
        if flags:
            mattr = tuple(neg for flag, neg in _HIDEABLE.items()
                          if flag not in flags and codegen.llvm_cpu_has_features([flag], _tvm_target(cpu)))
    cores = num_cores or len(os.sched_getaffinity(0))
    triple = mtriple or SEED_TRIPLE
    if mcpu is not None or mtriple is not None:
        check_llvm_names(cpu, triple)
    return TargetSpec(cpu, cores, triple, mattr)


def portable_target(num_cores: int | None = None, level: str = PORTABLE_CPU) -> TargetSpec:
    """A generic CPU of an x86-64 level (`selfie-tvm compile --portable`)."""
    return TargetSpec(level, num_cores or len(os.sched_getaffinity(0)), SEED_TRIPLE)


def library_targets(portable_core_counts: tuple[int, ...] = ()) -> list[TargetSpec]:
    """Targets whose libraries this host can run, best first: its own, then portable ones (this
    host's core count first; a library built for another core count still runs, on this pool)."""
    host = host_target()
    if host.vector_isa not in ("avx2", "avx512"):
        return [host]
    cores = [host.num_cores, *(n for n in portable_core_counts if n != host.num_cores)]
    return [host, *(portable_target(n) for n in cores)]


def check_llvm_names(mcpu: str, mtriple: str) -> None:
    """Refuse a CPU name or triple LLVM does not know (it would fall back to a generic CPU, or crash)."""
    from tvm.target import codegen

    arch = mtriple.split("-")[0]
    if arch not in set(codegen.llvm_get_targets()) and not re.fullmatch(r"i[3-6]86", arch):
        raise TargetError(f"--mtriple {mtriple!r}: LLVM knows no architecture {arch!r}; "
                          f"use e.g. {SEED_TRIPLE} or aarch64-linux-gnu, or leave --mtriple out")
    if not codegen.llvm_is_valid_cpu(mcpu, mtriple):
        raise TargetError(f"--mcpu {mcpu!r} is not a CPU LLVM knows for {mtriple}; use e.g. znver3, "
                          "skylake-avx512, x86-64-v3, or leave --mcpu out to detect this machine's")


def _tvm_target(cpu: str):
    import tvm

    return tvm.target.Target({"kind": "llvm", "mcpu": cpu})
