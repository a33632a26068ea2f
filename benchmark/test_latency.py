"""Latency benchmarks, one per (engine, thread count), engines interleaved round by round.

Before every timed round of one engine, the other engines run once (pytest-benchmark's untimed
`setup`), so slow drifts of the machine (frequency, neighbours, cache) hit every engine alike.
"""

from __future__ import annotations

import resource

from .conftest import set_threads


def test_inference(benchmark, bench, engine_name, threads):
    this = bench.get(engine_name, threads)
    others = [bench.get(name, threads) for name in bench.engines if name != engine_name]

    def interleave():
        for other in others:
            set_threads(other.engine, threads)
            other.engine.run(bench.x)
        set_threads(this.engine, threads)
        return (bench.x,), {}

    benchmark.group = f"{bench.model.spec.name}, {threads} thread(s)"
    benchmark.extra_info.update(
        kind="inference", engine=engine_name, threads=threads, model=bench.model.spec.name,
        synthetic_weights=bench.model.spec.synthetic, load_ms=this.load_ms, first_run_ms=this.first_run_ms,
        rss_delta_mb=this.rss_delta_mb)
    out = benchmark.pedantic(this.engine.run, setup=interleave, rounds=bench.runs, warmup_rounds=bench.warmup,
                             iterations=1)
    # Peak resident memory of the whole benchmark process so far (all engines loaded up to now).
    benchmark.extra_info["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert out.shape[-1] == bench.model.spec.num_classes or bench.model.spec.output_kind == "probability"


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
