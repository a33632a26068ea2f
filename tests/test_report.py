"""benchmark/report.py and the saved run it renders: what is refused, and how runs merge (no engine runs here)."""

from __future__ import annotations

import json

import pytest

from benchmark.report import main
from benchmark.saved_run import SavedRun, merge

MODEL = "selfie_multiclass_twin"
TARGET = {"mcpu": "znver4", "num_cores": 2, "mtriple": "x86_64-linux-gnu", "mattr": ["-avx512f"],
          "id": "znver4-avx2-2c"}
ENVIRONMENT = {"cpu": "AMD EPYC", "cores": 2, "mhz": 2596.1, "vector_isa": "avx2", "flags": "avx avx2 fma",
               "python": "3.11.7", "tvm": "0.27.0.post1", "litert": "2.3.0", "numpy": "2.4.6",
               "date": "2026-11-25T20:15:01+00:00", "peak_gflops": 166.2}


def part(threads: int, target: dict = TARGET, *, data: bool = True) -> dict:
    """pytest-benchmark's JSON of one thread count's process (one LiteRT benchmark, two rounds)."""
    stats = {"data": [0.010, 0.012]} if data else {}
    machine = {"environment": ENVIRONMENT, "target": target, "model": MODEL, "model_sha256": "ab"}
    return {"machine_info": {"node": "vm", "selfie_tvm": machine},
            "commit_info": {"id": f"commit-{threads}"}, "datetime": f"time-{threads}", "version": "5.2.3",
            "benchmarks": [{"stats": stats, "extra_info": {"kind": "inference", "engine": "litert",
                                                           "threads": threads, "slow": threads == 2}}]}


def test_merge_keeps_every_process_benchmarks_and_the_first_ones_machine():
    run = merge([part(1), part(2)])
    assert [b["extra_info"]["threads"] for b in run["benchmarks"]] == [1, 2]
    assert run["commit_info"] == {"id": "commit-1"} and run["datetime"] == "time-1"


def test_merge_refuses_processes_measured_on_different_targets():
    with pytest.raises(ValueError, match="disagree on target"):
        merge([part(1), part(2, {**TARGET, "id": "x86-64-v3-avx2-2c"})])


def test_saved_run_reads_what_the_report_needs(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(merge([part(1), part(2)])))
    run = SavedRun.read(path)
    assert run.target["id"] == "znver4-avx2-2c" and run.model == MODEL
    assert run.thread_counts() == [1, 2] and run.inference_engines() == ["litert"] and run.slow_engines() == {"litert"}
    samples, _ = run.samples()
    assert samples["latency_ms"].tolist() == pytest.approx([10.0, 12.0, 10.0, 12.0])


def test_rerendering_a_json_not_saved_by_the_benchmark_is_refused(tmp_path, capsys):
    plain = part(1)
    del plain["machine_info"]["selfie_tvm"]
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(plain))
    with pytest.raises(SystemExit) as exit_:
        main([str(path), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "does not say what it was measured on" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_rerendering_a_run_without_raw_samples_is_refused(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(part(1, data=False)))
    with pytest.raises(SystemExit):
        main([str(path), "--out", str(tmp_path / "out")])
    assert "has no raw data: run pytest with --benchmark-save-data" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_rerendering_a_run_of_an_unknown_model_is_refused(tmp_path, capsys):
    run = part(1)
    run["machine_info"]["selfie_tvm"]["model"] = "no_such_model"
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    with pytest.raises(SystemExit):
        main([str(path), "--out", str(tmp_path / "out")])
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def test_rerendering_an_incomplete_run_is_refused(tmp_path, capsys):
    run = part(1)
    del run["machine_info"]["selfie_tvm"]["environment"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    with pytest.raises(SystemExit):
        main([str(path), "--out", str(tmp_path / "out")])
    assert "is incomplete: no environment" in capsys.readouterr().err


def test_rerendering_a_missing_file_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nothing.json")])
    assert "cannot read the saved run" in capsys.readouterr().err


def test_a_run_rendered_on_another_machine_names_the_measuring_one(tmp_path, monkeypatch):
    import runtime.target

    monkeypatch.setattr(runtime.target, "host_target",
                        lambda *a, **k: runtime.target.TargetSpec("x86-64-v3", 7, "x86_64-linux-gnu"))
    monkeypatch.setattr(runtime.target, "_cpuinfo", lambda: ({"model name": "Renderer CPU", "flags": "sse2"}, (9.0,)))
    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    path = tmp_path / "run.json"
    path.write_text(json.dumps(merge([part(1), part(2)])))
    out = tmp_path / "results" / MODEL / TARGET["id"]
    out.mkdir(parents=True)
    (out / "profile_tuned.csv").write_text("kernel,ms\nfrom_an_earlier_run,1.0\n")
    assert main([str(path)]) == 0
    assert not (out / "profile_tuned.csv").exists()  # this run measured no profile
    assert "## Where the tuned module spends its time" not in (out / "report.md").read_text()
    machine = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("Machine:"))
    assert machine == ("Machine: AMD EPYC, 2 cores (avx avx2 fma), target `znver4-avx2-2c`. Python 3.11.7, "
                       "apache-tvm 0.27.0.post1, ai-edge-litert 2.3.0, numpy 2.4.6. 2026-11-25T20:15:01+00:00, "
                       "commit `commit-1`.")
    env = json.loads((out / "environment.json").read_text())
    assert env["date"] == ENVIRONMENT["date"] and env["cpu"] == "AMD EPYC" and env["target"] == TARGET


def test_a_run_saved_by_a_newer_version_still_renders_its_libraries(tmp_path, monkeypatch):
    """Library metadata saved with a field this version does not know (and without one it added since)."""
    monkeypatch.setenv("SELFIE_TVM_RESULTS_DIR", str(tmp_path / "results"))
    run = merge([part(1), part(2)])
    tuned = {"kind": "tuned", "model": MODEL, "model_sha256": "ab", "target": TARGET, "tvm_version": "0.27.0",
             "graph": {"prepack_weights": True}, "kernels": 40, "untuned_kernels": ["fused_conv2d9"],
             "a_field_from_a_newer_version": {"anything": 1}}
    run["machine_info"]["selfie_tvm"]["libraries"] = {"tuned": tuned}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    assert main([str(path)]) == 0
    report = (tmp_path / "results" / MODEL / TARGET["id"] / "report.md").read_text()
    line = next(line for line in report.splitlines()
                if line.startswith("- ") and "`znver4-avx2-2c`, prepack_weights" in line)
    assert "partially tuned: 1 of 40 kernels without a record" in line


def test_the_libraries_section_says_where_the_records_came_from_and_whose_records_ranked_first():
    from benchmark.report import libraries_section

    provenance = {"isa": "x86-64-v4", "tuned_on_cpu": "Intel Xeon", "tuning_seconds": 600,
                  "tuned_for_target": {"mcpu": "rocketlake", "num_cores": 2}}
    tuned = {"kind": "tuned", "model": MODEL, "model_sha256": "ab", "target": TARGET, "tvm_version": "0.27.0",
             "trials": 1095, "records_provenance": provenance, "graph": {"weight_prepack": True},
             "kernels": 70, "untuned_kernels": ["fused_conv2d"], "records_ranked_by": "znver4"}
    older = {k: v for k, v in tuned.items() if k != "records_ranked_by"}  # saved before the field existed
    line, = [x for x in libraries_section({"tuned": tuned}) if x.startswith("- ")]
    assert ("records for x86-64-v4 from 1095 tuning trials (tuned on Intel Xeon, LLVM CPU rocketlake, 2 cores, "
            "10 min of tuning), a kernel's records measured on `znver4` preferred") in line
    assert "partially tuned: 1 of 70 kernels without a record" in line
    assert "preferred" not in libraries_section({"tuned": older})[2]


def test_the_libraries_section_names_every_cpu_a_continued_record_set_was_tuned_on():
    from benchmark.report import libraries_section

    intel = {"mcpu": "rocketlake", "num_cores": 2}
    provenance = {"isa": "x86-64-v4", "tuned_on_cpu": "AMD EPYC", "tuning_seconds": 1500,
                  "tuned_for_target": {"mcpu": "znver5", "num_cores": 2},
                  "continued": [{"cpu": "Intel Xeon", "target": intel, "seconds": 240, "model": MODEL},
                                {"cpu": "AMD EPYC", "target": {"mcpu": "znver4", "num_cores": 2}, "seconds": 300},
                                {"cpu": "Intel Xeon", "target": intel, "seconds": 360, "model": MODEL}]}
    tuned = {"kind": "tuned", "model": MODEL, "model_sha256": "ab", "target": TARGET, "tvm_version": "0.27.0",
             "trials": 900, "records_provenance": provenance, "kernels": 70}
    line, = [x for x in libraries_section({"tuned": tuned}) if x.startswith("- ")]
    assert ("(tuned on AMD EPYC, LLVM CPU znver5, 2 cores, 10 min; Intel Xeon, LLVM CPU rocketlake, 2 cores, "
            "10 min; AMD EPYC, LLVM CPU znver4, 2 cores, 5 min; 25 min of tuning in all)") in line
