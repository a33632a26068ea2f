"""What the machine code of a compiled library's kernels does, read statically with objdump.

`python -m tuning.asm_report LIB.so --kernels fused_conv2d5_add4_relu3 ...` prints one markdown row per
kernel: vector width, the hot loop's FMAs, accumulators, vector spills and reloads, broadcasts,
gathers, and the workspace / memset / memcpy / parallel-launch calls of the whole kernel.

A kernel is TVM's `<name>_compute_` function plus the code up to the next symbol: the parallel
lambdas it hands to TVMBackendParallelLaunch are private and emitted right after it. The hot loop is
the innermost loop (a backward branch enclosing no other) with the most FMAs; `FMAs in kernel`
counts all of them, so a hot loop holding few of those (padding branches laid out around it) shows.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import SelfieTvmError

_FUNC = re.compile(r"^([0-9a-f]+) <(.+)>:$")
_INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
_TARGET = re.compile(r"^([0-9a-f]+) <")
_GOT_COMMENT = re.compile(r"# ([0-9a-f]+) <")
_STACK = re.compile(r"\[(rsp|rbp)[+\-\]]")
_VECTOR_MEM = re.compile(r"[XYZ]MMWORD PTR|\{1to\d+\}")
_REG = re.compile(r"\b([xyz])mm\d+\b")
_WIDTH = {"x": 128, "y": 256, "z": 512}
_ARG_WINDOW = 12  # instructions between setting a call's size argument and the call
_RUNTIME = ("TVMBackendParallelLaunch", "TVMBackendAllocWorkspace")


@dataclass(frozen=True)
class Insn:
    address: int
    mnemonic: str
    operands: str

    @property
    def is_fma(self) -> bool:
        return self.mnemonic.startswith(("vfmadd", "vfmsub", "vfnmadd", "vfnmsub"))

    @property
    def dest(self) -> str:
        return self.operands.split(",", 1)[0].strip()

    @property
    def sources(self) -> str:
        return self.operands.split(",", 1)[1] if "," in self.operands else ""

    def branch_target(self) -> int | None:
        if not self.mnemonic.startswith("j"):
            return None
        m = _TARGET.match(self.operands)
        return int(m.group(1), 16) if m else None


@dataclass(frozen=True)
class KernelAsm:
    name: str
    vector_bits: int
    hot_loop_bytes: int
    fmas: int
    kernel_fmas: int
    accumulators: int
    vector_loads: int
    broadcasts: int
    gathers: int
    vector_spills: int
    vector_reloads: int
    stack_scalar: int
    parallel_launches: int
    workspaces: list[int | None]  # bytes, None when not a constant
    memsets: int
    memcpys: int


def disassemble(lib: Path) -> tuple[str, str]:
    """objdump's Intel-syntax disassembly and dynamic relocations of `lib`."""
    if shutil.which("objdump") is None:
        raise SelfieTvmError("objdump not found: install binutils (apt-get install binutils)")
    if not lib.is_file():
        raise SelfieTvmError(f"library {lib} does not exist")

    def objdump(*options: str) -> str:
        return subprocess.run(["objdump", *options, str(lib)], check=True, capture_output=True, text=True).stdout

    return objdump("-d", "--no-show-raw-insn", "-M", "intel"), objdump("-R")


def functions(disasm: str) -> dict[str, list[Insn]]:
    out: dict[str, list[Insn]] = {}
    current: list[Insn] | None = None
    for line in disasm.splitlines():
        if m := _FUNC.match(line):
            current = out.setdefault(m.group(2), [])
        elif current is not None and (m := _INSN.match(line)):
            current.append(Insn(int(m.group(1), 16), m.group(2), m.group(3)))
    return out


def runtime_slots(relocs: str) -> dict[int, str]:
    """GOT slot address -> TVM runtime symbol, from `objdump -R`."""
    slots = {}
    for line in relocs.splitlines():
        parts = line.split()
        symbol = parts[2].split("@")[0].lstrip("_") if len(parts) == 3 else ""
        if symbol in _RUNTIME:  # TVM's function-pointer variables, e.g. __TVMBackendParallelLaunch
            slots[int(parts[0], 16)] = symbol
    return slots


def innermost_loops(code: list[Insn]) -> list[list[Insn]]:
    """The code between each backward branch and its target, for those enclosing no other."""
    spans = [(t, i.address) for i in code if (t := i.branch_target()) is not None and t <= i.address]
    inner = [s for s in spans if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    return [[i for i in code if lo <= i.address <= hi] for lo, hi in inner]


def _vector_load(i: Insn) -> bool:
    memory_source = bool(_VECTOR_MEM.search(i.sources)) or (
        i.mnemonic.startswith("vbroadcast") and "PTR" in i.sources)
    return memory_source and not _VECTOR_MEM.search(i.dest)


def analyse(name: str, code: list[Insn], slots: dict[int, str]) -> KernelAsm:
    loops = innermost_loops(code)
    hot = max(loops, key=lambda loop: (sum(i.is_fma for i in loop), len(loop)), default=[])
    fmas = [i for i in hot if i.is_fma]
    widths = [_WIDTH[r] for i in fmas for r in _REG.findall(i.operands)]
    calls: list[str] = []
    workspaces: list[int | None] = []
    loaded: dict[str, str] = {}  # register -> runtime symbol whose GOT slot it holds
    size, size_at = None, -1
    for n, i in enumerate(code):
        m = _GOT_COMMENT.search(i.operands)
        if i.mnemonic == "mov" and m and int(m.group(1), 16) in slots:
            loaded[i.dest] = slots[int(m.group(1), 16)]
        elif i.mnemonic in ("mov", "lea") and i.dest in loaded:  # e.g. another runtime function's slot
            del loaded[i.dest]
        if i.mnemonic == "mov" and i.dest in ("edx", "rdx") and re.fullmatch(r"0x[0-9a-f]+", i.sources.strip()):
            size, size_at = int(i.sources.strip(), 16), n
        if i.mnemonic == "call":
            target = next((sym for reg, sym in loaded.items() if f"[{reg}" in i.operands), i.operands)
            calls.append(target)
            if "TVMBackendAllocWorkspace" in target:  # nbytes is its third argument, set just before
                workspaces.append(size if size is not None and n - size_at <= _ARG_WINDOW else None)
    stack_vector = [i for i in hot if _STACK.search(i.operands) and _VECTOR_MEM.search(i.operands)]
    return KernelAsm(
        name=name, vector_bits=max(widths, default=0),
        hot_loop_bytes=hot[-1].address - hot[0].address if hot else 0,
        fmas=len(fmas), kernel_fmas=sum(i.is_fma for i in code), accumulators=len({i.dest for i in fmas}),
        vector_loads=sum(_vector_load(i) for i in hot),
        broadcasts=sum(i.mnemonic.startswith("vbroadcast") or "{1to" in i.operands for i in hot),
        gathers=sum(i.mnemonic.startswith(("vgather", "vpgather")) for i in hot),
        vector_spills=sum(_STACK.search(i.dest) is not None for i in stack_vector),
        vector_reloads=sum(_STACK.search(i.dest) is None for i in stack_vector),
        stack_scalar=sum(bool(_STACK.search(i.operands)) and not _VECTOR_MEM.search(i.operands) for i in hot),
        parallel_launches=sum("TVMBackendParallelLaunch" in c for c in calls),
        workspaces=workspaces,
        memsets=sum("memset" in c for c in calls), memcpys=sum("memcpy" in c for c in calls),
    )


def kernel_symbols(names: list[str], prefixes: list[str]) -> list[str]:
    """The `_compute_` functions of the given kernels (a prepacked build renames them, e.g.
    fused_conv2d5_add4_relu31_prepacked_compute_; its weight-prepack functions are left out)."""
    found = []
    for prefix in prefixes:
        matches = [n for n in names if n.startswith(prefix) and n.endswith("_compute_") and "weight_prepack" not in n]
        if not matches:
            raise SelfieTvmError(f"no kernel function named {prefix}*_compute_ in the library")
        found.extend(sorted(matches, key=len)[:1])
    return found


HEADER = ("| kernel | vec bits | hot loop bytes | FMAs (in kernel) | accumulators | vec loads | broadcasts | gathers "
          "| stack vec stores / loads | scalar stack ops | parallel launches | workspaces (bytes) | memset / memcpy |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(k: KernelAsm) -> str:
    spaces = ", ".join("?" if s is None else str(s) for s in k.workspaces) or "-"
    return (f"| {k.name} | {k.vector_bits} | {k.hot_loop_bytes} | {k.fmas} ({k.kernel_fmas}) | {k.accumulators} "
            f"| {k.vector_loads} | {k.broadcasts} | {k.gathers} | {k.vector_spills} / {k.vector_reloads} "
            f"| {k.stack_scalar} | {k.parallel_launches} | {spaces} | {k.memsets} / {k.memcpys} |")


def report(lib: Path, kernels: list[str]) -> list[KernelAsm]:
    disasm, relocs = disassemble(lib)
    funcs = functions(disasm)
    slots = runtime_slots(relocs)
    return [analyse(sym, funcs[sym], slots) for sym in kernel_symbols(list(funcs), kernels)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tuning.asm_report", description=__doc__.splitlines()[0])
    p.add_argument("library", type=Path)
    p.add_argument("--kernels", nargs="+", required=True, help="kernel name prefixes, e.g. fused_conv2d5_add4")
    args = p.parse_args(argv)
    try:
        rows = report(args.library, args.kernels)
    except SelfieTvmError as e:
        raise SystemExit(f"error: {e}") from None
    print(HEADER)
    for k in rows:
        print(row(k))


if __name__ == "__main__":
    main()
