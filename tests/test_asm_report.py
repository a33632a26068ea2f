from __future__ import annotations

import pytest
import tvm
import tvm.s_tir as s_tir
from tvm import te

from runtime.errors import SelfieTvmError
from tuning.asm_report import analyse, functions, main, report, runtime_slots


def matmul_library(tmp_path, mcpu: str, lanes: int, tiles: int):
    """A real TVM kernel with a known register tile: `tiles` vectors of `lanes` floats per row."""
    a, b = te.placeholder((64, 64), name="A"), te.placeholder((64, 64), name="B")
    k = te.reduce_axis((0, 64), name="k")
    c = te.compute((64, 64), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    sch = s_tir.Schedule(te.create_prim_func([a, b, c]).with_attr("global_symbol", "mm"))
    block = sch.get_sblock("C")
    i, j, kk = sch.get_loops(block)
    jo, jt, ji = sch.split(j, [None, tiles, lanes])
    sch.reorder(i, jo, kk, jt, ji)
    sch.parallel(sch.fuse(i, jo))
    sch.unroll(jt)
    sch.vectorize(ji)
    sch.decompose_reduction(block, kk)
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": 2, "mtriple": "x86_64-linux-gnu"})
    path = tmp_path / f"mm_{mcpu}.so"
    tvm.compile(sch.mod, target=target).export_library(str(path))
    return path


@pytest.mark.parametrize(("mcpu", "lanes", "tiles"), [("x86-64-v3", 8, 4), ("x86-64-v3", 8, 8),
                                                      ("skylake-avx512", 16, 4)])
def test_reads_the_register_tile_of_a_compiled_kernel(tmp_path, mcpu, lanes, tiles):
    [kernel] = report(matmul_library(tmp_path, mcpu, lanes, tiles), ["mm"])
    assert kernel.name == "mm_compute_"
    assert kernel.vector_bits == 32 * lanes
    assert kernel.accumulators == tiles
    assert kernel.fmas > 0 and kernel.fmas % tiles == 0
    assert kernel.broadcasts > 0
    assert (kernel.vector_spills, kernel.vector_reloads, kernel.gathers) == (0, 0, 0)
    assert kernel.parallel_launches == 1


# objdump -d -M intel / objdump -R output in the shape TVM's libraries give (addresses made up).
DISASM = """
0000000000001000 <k_compute_>:
    1000:\tmov    r13,QWORD PTR [rip+0x10]        # 3000 <__TVMBackendAllocWorkspace@@Base-0x80>
    1007:\tmov    edx,0xcc3000
    100c:\tmov    edi,0x1
    1011:\tcall   QWORD PTR [r13+0x0]
    1015:\tcall   2040 <memset@plt>
    101a:\tvbroadcastss ymm1,DWORD PTR [rdi+0x4]
    1020:\tvfmadd231ps ymm2,ymm1,YMMWORD PTR [rsi]
    1026:\tvfmadd231ps ymm3,ymm1,YMMWORD PTR [rsi+0x20]
    102c:\tvmovups YMMWORD PTR [rsp+0x40],ymm2
    1032:\tvmovups ymm4,YMMWORD PTR [rsp+0x60]
    1038:\tvfmadd231ps zmm5,zmm4,DWORD PTR [rdx]{1to16}
    103e:\tjne    101a <k_compute_+0x1a>
    1040:\tvfmadd231ps ymm6,ymm1,ymm1
    1046:\tpop    r13
    1048:\tret

0000000000002000 <next>:
    2000:\tret
"""
RELOCS = "0000000000003000 R_X86_64_GLOB_DAT  __TVMBackendAllocWorkspace@@Base\n"


def test_counts_what_the_hot_loop_does_with_registers_and_memory():
    code = functions(DISASM)["k_compute_"]
    kernel = analyse("k_compute_", code, runtime_slots(RELOCS))
    assert kernel.fmas == 3 and kernel.kernel_fmas == 4
    assert kernel.accumulators == 3
    assert kernel.vector_bits == 512
    assert kernel.broadcasts == 2  # vbroadcastss and the embedded {1to16}
    assert kernel.vector_loads == 5
    assert (kernel.vector_spills, kernel.vector_reloads) == (1, 1)
    assert kernel.workspaces == [0xCC3000]
    assert (kernel.memsets, kernel.memcpys, kernel.parallel_launches) == (1, 0, 0)


def test_an_unknown_kernel_is_one_clear_error(tmp_path, capsys):
    library = matmul_library(tmp_path, "x86-64-v3", 8, 4)
    with pytest.raises(SelfieTvmError, match="no kernel function named conv9"):
        report(library, ["conv9"])
    with pytest.raises(SystemExit, match="does not exist"):
        main([str(tmp_path / "missing.so"), "--kernels", "mm"])
    main([str(library), "--kernels", "mm"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| kernel | vec bits") and lines[2].startswith("| mm_compute_ | 256 |")
