"""Limit LiteRT to its AVX2 code paths on a host that has AVX-512, for comparisons at the x86-64-v3 level.

Issue #14 compares TVM's x86-64-v3 (AVX2) library with LiteRT "where LiteRT too is limited to AVX2".
XNNPACK, LiteRT's CPU delegate, picks its kernels once per process from cpuinfo's ISA flags
(`cpuinfo_isa`, read by `init_hardware_config` in XNNPACK's src/configs/hardware-config.c). Before the
process creates any interpreter, `limit_to_avx2()` (what `LiteRTEngine(..., isa="avx2")` calls)
initialises cpuinfo and clears its AVX-512 and AVX-VNNI flags, so XNNPACK selects the same fma3/avx2
kernels it runs on an AVX2-only CPU (no AVX-512, no AVX-VNNI: Zen 3, Haswell-Skylake client). The
microarchitecture, caches and clock stay this host's: a ratio measured this way is "both engines limited
to AVX2 on this host", not a measurement on an AVX2-only machine.

Both symbols are local to the pinned wheel's library (ai-edge-litert 2.3.0 ships its symbol table);
the field offsets are cpuinfo's `struct cpuinfo_x86_isa` for x86-64 and are checked against
/proc/cpuinfo before anything is written, and XNNPACK's resulting flags are checked after.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from pathlib import Path

from ..errors import SelfieTvmError

LIBRARY = "libpywrap_litert_common.so"
NATIVE, AVX2 = "native", "avx2"
ISA_LEVELS = (NATIVE, AVX2)
# The TVM ISA level whose libraries are compared with LiteRT limited to AVX2 (runtime.target.isa_level names).
AVX2_LEVEL = "x86-64-v3"

# struct cpuinfo_x86_isa (x86-64): byte offset -> the /proc/cpuinfo flag of the same feature.
KEPT = {0x16: "avx", 0x18: "fma", 0x1b: "f16c", 0x1c: "avx2"}
CLEARED = {0x17: "avx_vnni", 0x1d: "avx512f", 0x1e: "avx512pf", 0x1f: "avx512er", 0x20: "avx512cd",
           0x21: "avx512dq", 0x22: "avx512bw", 0x23: "avx512vl", 0x24: "avx512ifma", 0x25: "avx512vbmi",
           0x26: "avx512_vbmi2", 0x27: "avx512_bitalg", 0x28: "avx512_vpopcntdq", 0x29: "avx512_vnni",
           0x2a: "avx512_bf16", 0x2b: "avx512_fp16", 0x2c: "avx512_vp2intersect", 0x2d: "avx512_4vnniw",
           0x2e: "avx512_4fmaps"}
# XNNPACK's arch_flags (the uint64 after the first field of `hardware_config`) on an AVX2-only CPU:
# bits 0-7 are sse, sse2, ssse3, sse4.1, avx, f16c, fma3, avx2 in this build.
ARCH_FLAGS_OFFSET = 8
AVX2_ARCH_FLAGS = 0xFF


class LiteRTIsaError(SelfieTvmError):
    """LiteRT cannot be limited to AVX2 in this process or with this LiteRT build."""


@dataclass(frozen=True)
class _Symbols:
    cpuinfo_initialize: int
    cpuinfo_isa: int
    hardware_config: int


def _library() -> Path:
    from ai_edge_litert import interpreter

    path = Path(interpreter.__file__).with_name(LIBRARY)
    if not path.is_file():
        raise LiteRTIsaError(f"{path} not found: this ai-edge-litert build is not the pinned one")
    return path


@functools.cache  # parsing the library's symbol table takes a while; the file does not change
def _symbols(path: Path) -> _Symbols:
    from elftools.elf.elffile import ELFFile

    with path.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        if symtab is None:
            raise LiteRTIsaError(f"{path} has no symbol table: LiteRT cannot be limited to AVX2 with this build")
        found = {}
        for name in ("cpuinfo_initialize", "cpuinfo_isa", "hardware_config"):
            symbols = symtab.get_symbol_by_name(name)
            if not symbols:
                raise LiteRTIsaError(f"{path} has no symbol {name!r}: not the XNNPACK this module knows")
            found[name] = symbols[0]["st_value"]
    return _Symbols(**found)


def _load_address(path: Path) -> int:
    resolved = str(path.resolve())
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] == resolved and int(fields[2], 16) == 0:
            return int(fields[0].split("-")[0], 16)
    raise LiteRTIsaError(f"{path} is not mapped into this process")


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    raise LiteRTIsaError("/proc/cpuinfo lists no CPU flags")


def xnnpack_arch_flags() -> int:
    """XNNPACK's ISA flags in this process (0 until the first interpreter initialised it)."""
    path = _library()
    base = _load_address(path)
    return ctypes.c_uint64.from_address(base + _symbols(path).hardware_config + ARCH_FLAGS_OFFSET).value


def limit_to_avx2() -> None:
    """Make XNNPACK in this process choose only kernels an AVX2-only CPU runs: before any interpreter, or
    again once it is limited (a no-op then)."""
    flags = xnnpack_arch_flags()
    if flags == AVX2_ARCH_FLAGS:
        return
    if flags:
        raise LiteRTIsaError("XNNPACK already chose its AVX-512 kernels in this process (a LiteRT interpreter "
                             "exists): limit LiteRT to AVX2 before creating one, in a process of its own")
    path = _library()
    symbols = _symbols(path)
    base = _load_address(path)
    if not ctypes.CFUNCTYPE(ctypes.c_bool)(base + symbols.cpuinfo_initialize)():
        raise LiteRTIsaError("cpuinfo could not read this CPU")
    isa = (ctypes.c_uint8 * (max(CLEARED) + 1)).from_address(base + symbols.cpuinfo_isa)
    cpu = _cpu_flags()
    if not all(isa[offset] for offset in KEPT) or not {"avx2", "fma"} <= cpu:
        raise LiteRTIsaError("this CPU has no AVX2 and FMA: nothing to limit LiteRT to")
    mismatched = [flag for offset, flag in CLEARED.items() if bool(isa[offset]) != (flag in cpu)]
    if mismatched:
        raise LiteRTIsaError(f"cpuinfo's flags in {path.name} disagree with /proc/cpuinfo on {', '.join(mismatched)}: "
                             "not the struct layout this module knows")
    for offset in CLEARED:
        isa[offset] = 0


def check_limited(flags: int) -> None:
    """After the first interpreter: XNNPACK's flags must be exactly those of an AVX2-only CPU."""
    if flags != AVX2_ARCH_FLAGS:
        raise LiteRTIsaError(f"XNNPACK's ISA flags are {flags:#x} after limiting it to AVX2, expected "
                             f"{AVX2_ARCH_FLAGS:#x}: LiteRT would not run its AVX2 kernels")
