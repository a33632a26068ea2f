"""Tuning statistics from a MetaSchedule database: per-task table, convergence, summary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import tvm
from tvm.s_tir import meta_schedule as ms

from . import STRUCTURAL
from .database import measured_on, read_records
from .tasks import plan_tasks, task_flops


@dataclass
class TaskStats:
    task: str
    weight: int
    flops: float
    trials: int
    best_us: float | None
    gflops: float | None
    share: float | None  # of the estimated total latency of tuned kernels


@dataclass
class TuningStats:
    tasks: list[TaskStats]
    convergence: list[tuple[int, float]]  # (trials so far, estimated total latency in ms)
    total_trials: int

    @property
    def estimated_total_ms(self) -> float | None:
        return self.convergence[-1][1] if self.convergence else None

    def trials_to_reach(self, ms: float) -> int | None:
        """Trials after which the estimated total first fell to `ms` or below (None: not yet)."""
        return next((n for n, total in self.convergence if total <= ms), None)

    def table(self):
        import pandas as pd

        return pd.DataFrame([asdict(t) for t in self.tasks]).sort_values("share", ascending=False)


def collect(mod: tvm.IRModule, target: tvm.target.Target, work_dir: Path,
            module_equality: str = STRUCTURAL) -> TuningStats:
    """`mod` is the optimised module that was tuned (its tasks define the table's rows).

    Records are read in the order they were measured (the database file's line order; the
    database API returns them grouped and sorted by cost, which says nothing about convergence).
    A kernel's best latency is taken as a build selects its record (`database.select_for`): among
    the records measured on `target`'s CPU when it has any, else among all: another CPU's latency
    says nothing about this one (a Zen 5 record made the twin's depthwise kernels look 3-11x faster
    than they ran here).
    """
    work_dir = Path(work_dir)
    db = ms.database.JSONDatabase(work_dir=str(work_dir), allow_missing=True, module_equality=module_equality)
    tasks = plan_tasks(mod, target, module_equality=module_equality).tasks  # tasks of kernels the built module runs
    task_of_shash = {str(db.commit_workload(t.dispatched[0]).as_json()[0]): i
                     for i, t in enumerate(tasks) if db.has_workload(t.dispatched[0])}
    records = read_records(work_dir)  # the plain files: opening the database above created them if missing
    cpu = measured_on(target.attrs)
    task_of = [task_of_shash.get(r.shash) for r in records]
    here = {i for i, r in zip(task_of, records, strict=True) if r.cpu == cpu and r.cost_s is not None}
    best: dict[int, float] = {}
    trials = [0] * len(tasks)
    convergence: list[tuple[int, float]] = []
    for n, (i, record) in enumerate(zip(task_of, records, strict=True), start=1):
        if i is None:
            continue
        trials[i] += 1
        cost = record.cost_s
        if i in here and record.cpu != cpu:
            continue
        if cost is not None and cost < best.get(i, float("inf")):
            best[i] = cost
        if len(best) == len(tasks):
            convergence.append((n, sum(tasks[j].weight * best[j] for j in best) * 1e3))
    total = sum(tasks[i].weight * best[i] for i in best) or 1.0
    rows = []
    for i, t in enumerate(tasks):
        flops = task_flops(t)
        b = best.get(i)
        rows.append(TaskStats(t.task_name, int(t.weight), flops, trials[i], b * 1e6 if b else None,
                              flops / b / 1e9 if b and flops else None, t.weight * b / total if b else None))
    return TuningStats(rows, convergence, len(records))


RUNS = "tuning_runs.csv"


@dataclass(frozen=True)
class MeasuredRun:
    """One tuning run's end, measured on the whole model: where the convergence really stands."""

    trials: int  # in the database after the run (all runs so far)
    tuning_min: float  # all runs so far
    tuned_ms: float
    litert_ms: float
    litert_kernels: str  # "native", or "avx2" when LiteRT was limited to the TVM library's ISA level
    threads: int
    cpu: str
    date: str


def append_run(out_dir: Path, trials: int, minutes: float, tuned_ms: float, litert_ms: float, *,
               litert_kernels: str, threads: int, cpu: str) -> MeasuredRun:
    """Append this run's measured latencies to `out_dir`/tuning_runs.csv (minutes: this run's)."""
    import datetime

    import pandas as pd

    path = out_dir / RUNS
    before = measured_runs(out_dir)
    so_far = float(before["tuning_min"].iloc[-1]) if len(before) else 0.0
    run = MeasuredRun(trials, round(so_far + minutes, 2), round(tuned_ms, 3), round(litert_ms, 3), litert_kernels,
                      threads, cpu, datetime.date.today().isoformat())
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([asdict(run)]).to_csv(path, mode="a", header=not path.is_file(), index=False)
    return run


def measured_runs(out_dir: Path):
    import pandas as pd

    path = out_dir / RUNS
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(MeasuredRun.__dataclass_fields__))


def first_measured_crossing(runs) -> dict | None:
    """The first run whose tuned module measured at or below LiteRT's p50 (None: none yet)."""
    at = runs[runs["tuned_ms"] <= runs["litert_ms"]]
    return None if at.empty else at.iloc[0].to_dict()


def write(stats: TuningStats, out_dir: Path, *, title: str, default_ms: float | None = None,
          litert_ms: float | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    table = stats.table()
    csv_path, json_path = out_dir / "tuning_tasks.csv", out_dir / "tuning_tasks.json"
    table.to_csv(csv_path, index=False, float_format="%.6g")
    json_path.write_text(json.dumps({
        "total_trials": stats.total_trials, "estimated_total_ms": stats.estimated_total_ms,
        "convergence": stats.convergence, "tasks": table.to_dict(orient="records")}, indent=1) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4))
    if stats.convergence:
        xs, ys = zip(*stats.convergence, strict=True)
        ax.plot(xs, ys, label="best estimated total (sum of task weight x best kernel latency)")
    if default_ms:
        ax.axhline(default_ms, color="grey", ls="--", label=f"untuned module, measured: {default_ms:.0f} ms")
    if litert_ms:
        ax.axhline(litert_ms, color="tab:green", ls=":", label=f"LiteRT (XNNPACK) p50, measured: {litert_ms:.1f} ms")
        crossed = stats.trials_to_reach(litert_ms)
        if crossed is not None:
            ax.axvline(crossed, color="tab:green", lw=0.8, label=f"estimate reaches LiteRT after {crossed} trials")
    runs = measured_runs(out_dir)
    if len(runs):
        ax.plot(runs["trials"], runs["tuned_ms"], "o-", color="tab:blue",
                label="tuned module, measured at each run's end")
        ax.plot(runs["trials"], runs["litert_ms"], "s:", color="tab:green", ms=4,
                label="LiteRT p50 measured beside it" + (" (AVX2 kernels only)"
                                                         if (runs["litert_kernels"] == "avx2").any() else ""))
        if (crossing := first_measured_crossing(runs)) is not None:
            ax.axvline(crossing["trials"], color="tab:red", lw=1,
                       label=f"measured: tuned <= LiteRT after {int(crossing['trials'])} trials, "
                             f"{crossing['tuning_min']:.0f} min")
    ax.set_xlabel("trials measured (the curve starts once every task has a measurement)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    plot_path = out_dir / "tuning_convergence.png"
    fig.savefig(plot_path, dpi=120)
    plt.close(fig)

    top = table.head(10)
    lines = [f"# {title}", "",
             f"- trials measured: {stats.total_trials}",
             f"- estimated total of tuned kernels: {stats.estimated_total_ms:.1f} ms" if stats.estimated_total_ms
             else "- estimated total: not every task has a valid measurement yet",
             "", "Top tasks by share of the estimated total:", "",
             "| task | GFLOP | trials | best (us) | GFLOP/s | share |", "|---|---|---|---|---|---|"]
    for row in top.itertuples():
        best = f"{row.best_us:.1f}" if row.best_us == row.best_us and row.best_us else "-"
        gf = f"{row.gflops:.1f}" if row.gflops == row.gflops and row.gflops else "-"
        share = f"{row.share:.1%}" if row.share == row.share and row.share is not None else "-"
        lines.append(f"| {row.task} | {row.flops / 1e9:.3f} | {row.trials} | {best} | {gf} | {share} |")
    if len(runs):
        crossing = first_measured_crossing(runs)
        lines += ["", "Measured at the end of each run (whole model, p50, the run's thread count; "
                  "`litert_kernels` avx2: LiteRT limited to the library's ISA level):", "",
                  runs.to_markdown(index=False, floatfmt=".2f"), "",
                  "Tuned module at or below LiteRT: " + (f"after {int(crossing['trials'])} trials, "
                                                         f"{crossing['tuning_min']:.1f} min of tuning"
                                                         if crossing is not None else "not yet")]
    summary = out_dir / "tuning_summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return [csv_path, json_path, plot_path, summary]
