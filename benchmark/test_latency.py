"""Latency benchmarks, one per (engine, thread count); protocol in benchmark/options.py (Protocol.plan).

Quick protocol (default): the fast engines (LiteRT and the tuned module, the comparison that matters)
are interleaved round by round: before every timed run of one, each other fast engine runs once
(pytest-benchmark's `setup`, timed here and saved as `partner_ms`: each makes a pair with the timed run
after it, benchmark/summary.py: paired_ratio_table), so slow drifts of the machine hit them alike; every
run waits until the other engines' pool threads are idle (benchmark/idle.py), so none runs beside a
spinning pool. A slow engine (first run over --slow-ms: the untuned module, ~5.5 s) gets --slow-runs
runs, each after one run of every fast engine, and never runs between the fast engines' rounds.
`--full`: every engine gets --runs runs, each after one run of every other engine.
"""

from __future__ import annotations

import os
import resource
import time

import numpy as np

from benchmark.idle import IdleWait, summarise, wait_until_idle
from runtime.engines import LITERT
from runtime.processing import to_probabilities


def test_inference(benchmark, bench, engine_name, threads):
    plan = bench.plan(engine_name, threads)
    this = bench.get(engine_name, threads)
    partners = [bench.get(name, threads) for name in plan.interleaved_with]
    waits: list[IdleWait] = []
    partner_ms: dict[str, list[float]] = {name: [] for name in plan.interleaved_with}

    def interleave():
        # A TVM engine sizes its thread's pool itself when it differs (all engines here share `threads`).
        # Each partner run is timed too, from an idle process as the timed run is: it and the timed run
        # that follows make a pair whose ratio no drift of the machine between the engines' blocks moves.
        for name, other in zip(plan.interleaved_with, partners, strict=True):
            wait_until_idle()
            t0 = time.perf_counter()
            other.engine.run(bench.x)
            partner_ms[name].append((time.perf_counter() - t0) * 1e3)
        waits.append(wait_until_idle())
        return (bench.x,), {}

    spec = bench.model.spec
    benchmark.group = f"{spec.name}, {threads} thread(s)"
    benchmark.extra_info.update(
        kind="inference", engine=engine_name, threads=threads, model=spec.name,
        synthetic_weights=spec.synthetic, load_ms=this.load_ms, first_run_ms=this.first_run_ms,
        rss_delta_mb=this.rss_delta_mb, protocol=bench.protocol.name, slow=plan.slow, slow_ms=bench.protocol.slow_ms,
        warmup=plan.warmup, interleaved_with=list(plan.interleaved_with),
        # Which process measured it, started with which TVM pool size (python -m benchmark: one per thread count).
        pid=os.getpid(), TVM_NUM_THREADS=os.environ.get("TVM_NUM_THREADS"))
    out = benchmark.pedantic(this.engine.run, setup=interleave, rounds=plan.rounds, warmup_rounds=plan.warmup,
                             iterations=1)
    benchmark.extra_info["idle_wait"] = summarise(waits)
    # The partners' runs before each timed round (warm-up rounds left out), in the order of the timed runs.
    benchmark.extra_info["partner_ms"] = {name: ms[len(ms) - plan.rounds:] for name, ms in partner_ms.items()}
    # Peak resident memory of the whole benchmark process so far (all engines loaded up to now).
    benchmark.extra_info["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if hasattr(this.engine, "actual_threads"):  # TVM: the pool the timed runs really used
        benchmark.extra_info["pool_threads"] = this.engine.actual_threads()
        assert benchmark.extra_info["pool_threads"] == threads

    # What was timed is the model: the registry's output shape, and LiteRT's answer on the same input.
    assert out.shape == spec.output_shape
    if engine_name != LITERT and LITERT in bench.engines:
        reference = bench.get(LITERT, threads).engine.run(bench.x)
        np.testing.assert_allclose(to_probabilities(out, spec), to_probabilities(reference, spec), atol=1e-3)


def test_preprocess(benchmark, bench):
    from skimage import data

    from runtime.processing import preprocess

    photo = data.astronaut()
    benchmark.group = f"{bench.model.spec.name}, processing"
    benchmark.extra_info.update(kind="preprocess", engine="preprocess", threads=1, model=bench.model.spec.name)
    x = benchmark(preprocess, photo, bench.model.spec)
    assert x.shape == bench.x.shape


def test_postprocess(benchmark, bench):
    from runtime.processing import resize_probabilities, to_probabilities

    raw = bench.get(bench.engines[0], 1).engine.run(bench.x)
    benchmark.group = f"{bench.model.spec.name}, processing"
    benchmark.extra_info.update(kind="postprocess", engine="postprocess", threads=1, model=bench.model.spec.name)
    probs = benchmark(lambda: resize_probabilities(to_probabilities(raw, bench.model.spec), 512, 512))
    assert probs.shape[:2] == (512, 512)
