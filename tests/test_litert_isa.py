"""runtime/engines/litert_isa.py: LiteRT limited to its AVX2 kernels, in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runtime.engines.litert_isa import AVX2_ARCH_FLAGS, LiteRTIsaError, limit_to_avx2

from .tiny_models import tiny_segmenter

ROOT = Path(__file__).resolve().parents[1]
HOST_HAS_AVX512 = "avx512f" in Path("/proc/cpuinfo").read_text()


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _litert_flags_and_output(model_path: Path, limit: bool) -> tuple[int, np.ndarray]:
    out = _run(f"""
        import json
        from pathlib import Path
        import numpy as np
        from runtime.engines.litert_isa import xnnpack_arch_flags
        from tests.tiny_models import tiny_segmenter
        from runtime.engines import LITERT, create_engine
        model = tiny_segmenter(Path({str(model_path)!r}))
        engine = create_engine(LITERT, model, 1, isa={"avx2" if limit else "native"!r})
        y = engine.run(np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32))
        print(json.dumps({{"flags": xnnpack_arch_flags(), "y": y.ravel().tolist()}}))
    """)
    result = json.loads(out)
    return result["flags"], np.array(result["y"], np.float32)


def test_limited_litert_runs_avx2_kernels_and_computes_the_same(tmp_path):
    model = tmp_path / "tiny.tflite"
    limited_flags, limited = _litert_flags_and_output(model, limit=True)
    native_flags, native = _litert_flags_and_output(model, limit=False)
    assert limited_flags == AVX2_ARCH_FLAGS
    if HOST_HAS_AVX512:  # otherwise the native flags are the AVX2 ones already
        assert native_flags & ~AVX2_ARCH_FLAGS, f"native XNNPACK flags {native_flags:#x} have no AVX-512 bit"
    np.testing.assert_allclose(limited, native, atol=1e-4)


def test_limiting_once_native_kernels_were_chosen_is_refused(tmp_path):
    from runtime.engines import LITERT, create_engine

    model = tiny_segmenter(tmp_path / "tiny.tflite")
    create_engine(LITERT, model, 1)
    if HOST_HAS_AVX512:
        with pytest.raises(LiteRTIsaError, match="already chose its AVX-512 kernels"):
            limit_to_avx2()
        with pytest.raises(LiteRTIsaError, match="already chose its AVX-512 kernels"):
            create_engine(LITERT, model, 1, isa="avx2")
    else:  # an AVX2-only CPU: LiteRT runs its AVX2 kernels anyway
        assert create_engine(LITERT, model, 1, isa="avx2").isa == "avx2"


def test_an_unknown_isa_is_refused(tmp_path):
    from runtime.engines import LITERT, create_engine
    from runtime.errors import EngineError

    with pytest.raises(EngineError, match="unknown LiteRT ISA 'avx512'"):
        create_engine(LITERT, tiny_segmenter(tmp_path / "tiny.tflite"), 1, isa="avx512")


def test_ablation_against_avx2_litert(tmp_path):
    """`python -m benchmark.ablation --litert-isa avx2`: LiteRT's row is the AVX2 one, checked, and labelled."""
    from runtime.target import host_target
    from tuning.build import export

    model_path = tmp_path / "tiny.tflite"
    library = export(tiny_segmenter(model_path), host_target(), "default", out_root=tmp_path / "build")
    _run(f"""
        from pathlib import Path
        import runtime.acquire
        from tests.tiny_models import tiny_segmenter
        model = tiny_segmenter(Path({str(model_path)!r}))
        runtime.acquire.resolve_model = lambda name, **_: model
        from benchmark.ablation import main
        print(main(["--model", "tiny", "--variant", "default={library}", "--threads", "1", "--rounds", "6",
                    "--litert-isa", "avx2", "--out", {str(tmp_path / "out")!r}]))
    """)
    df = pd.read_csv(tmp_path / "out" / "ablation_latency.csv")
    assert list(df["variant"]) == ["LiteRT (XNNPACK, AVX2 kernels only)", "default"]
    assert "LiteRT limited to its AVX2 kernels" in (tmp_path / "out" / "ablation_latency.md").read_text()
