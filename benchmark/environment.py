"""The machine and software a benchmark ran on, and the CPU's theoretical fp32 peak."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version

from runtime.target import cpu_flags, cpu_mhz, cpu_model_name

# fp32 FLOPs per cycle per core, assuming two FMA units of the ISA's full width: FMA units x SIMD lanes
# x 2 (multiply + add). An upper bound: Zen 2-4 and Skylake-class cores do issue two 256-bit FMAs per
# cycle, but many AVX-512 cores do not have two 512-bit ones (Zen 4 splits a 512-bit FMA into two
# 256-bit halves, many Xeon Silver/Bronze and client cores have one 512-bit unit): half the avx512 figure.
FLOPS_PER_CYCLE = {"avx512": 2 * 16 * 2, "avx2": 2 * 8 * 2, "sse": 2 * 4 * 2}


@dataclass
class Environment:
    cpu: str
    cores: int
    mhz: float | None
    vector_isa: str
    flags: str
    python: str
    tvm: str
    litert: str
    numpy: str
    date: str

    @property
    def peak_gflops(self) -> float | None:
        if not self.mhz:
            return None
        return self.cores * self.mhz / 1e3 * FLOPS_PER_CYCLE[self.vector_isa]

    @property
    def peak_formula(self) -> str:
        return (f"{self.cores} cores x {self.mhz:.0f} MHz x {FLOPS_PER_CYCLE[self.vector_isa]} fp32 FLOP/cycle "
                f"({self.vector_isa}: 2 FMA units x SIMD lanes x 2, an upper bound)") if self.mhz else "clock unknown"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["peak_gflops"] = self.peak_gflops
        return d


def collect(vector_isa: str) -> Environment:
    flags = cpu_flags()
    interesting = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4", "f16c", "amx")))
    return Environment(
        cpu=cpu_model_name(), cores=len(os.sched_getaffinity(0)), mhz=cpu_mhz(), vector_isa=vector_isa,
        flags=" ".join(interesting), python=platform.python_version(), tvm=version("apache-tvm"),
        litert=version("ai-edge-litert"), numpy=version("numpy"),
        date=datetime.now(UTC).isoformat(timespec="seconds"))
