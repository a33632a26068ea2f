"""Join LiteRT's per-operator profile with a TVM library's per-kernel profile by signature.

Both sides are grouped the way TVM fuses (benchmark/single_op.py `SingleOpModels.groups`): a LiteRT row
is a group (a convolution and the element-wise ops after it, a chain of reshapes and transposes, ...)
summed over its operators, named by its anchor's signature; a TVM row is a kernel, named by its
anchor's signature (benchmark/kernel_signature.py). Rows with the same signature are summed: the
calls differ when the grouping differs from TVM's. Work one side has and the other has not shows as 0 ms
on that side (a reshape that is a view in TVM; TVM's allocations and view builtins, `tvm-runtime`).

gap_ms is TVM - LiteRT; gap_share is a row's gap over the total gap, so with a negative total (TVM ahead)
a row where TVM is slower has a negative share.

GFLOP/s of both engines use the same numerator, 2 x the multiply-accumulates of the row's LiteRT
operators (OpInfo.macs: convolutions only), so the GFLOP/s ratio is the inverse of the time ratio.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RUNTIME = "tvm-runtime"  # TVM's own VM builtins (allocation, views): no kernel, no LiteRT operator
GAP_COLUMNS = ["signature", "kind", "litert_calls", "tvm_calls", "litert_ms", "tvm_ms", "ratio", "litert_gflops",
               "tvm_gflops", "gap_ms", "gap_share", "litert_ops", "tvm_kernels"]
KIND_COLUMNS = ["kind", "litert_calls", "tvm_calls", "litert_ms", "tvm_ms", "ratio", "litert_gflops", "tvm_gflops",
                "gap_ms", "gap_share"]


def litert_groups(ops: pd.DataFrame) -> pd.DataFrame:
    """Per-operator rows (op_profile's) -> per-group rows: signature, kind, ops ("CONV_2D+ADD"), ms, macs."""
    grouped = ops.sort_values("index").groupby("group", sort=True)
    return pd.DataFrame({
        "signature": grouped["group_signature"].first(), "kind": grouped["group_kind"].first(),
        "ops": grouped["op"].agg("+".join), "ms": grouped["ms"].sum(), "macs": grouped["macs"].sum(),
    }).reset_index(drop=True)


def _rate(macs: pd.Series, ms: pd.Series) -> pd.Series:
    return (2 * macs / ms.where(ms > 0) / 1e6).where(macs > 0)


def gap_table(groups: pd.DataFrame, kernels: pd.DataFrame) -> pd.DataFrame:
    """groups: litert_groups(); kernels: per-kernel rows with kernel, signature, kind, calls, ms.
    One row per signature, sorted by gap (TVM - LiteRT ms), largest first."""
    lite = groups.groupby("signature").agg(kind=("kind", "first"), litert_calls=("ms", "size"),
                                           litert_ms=("ms", "sum"), macs=("macs", "sum"),
                                           litert_ops=("ops", lambda s: ", ".join(sorted(set(s)))))
    tvm = kernels.groupby("signature").agg(tvm_kind=("kind", "first"), tvm_calls=("calls", "sum"),
                                           tvm_ms=("ms", "sum"), tvm_kernels=("kernel", lambda s: ", ".join(sorted(s))))
    table = lite.join(tvm, how="outer").reset_index()
    table["kind"] = table["kind"].fillna(table["tvm_kind"])
    table = table.drop(columns="tvm_kind")
    for column in ("litert_calls", "tvm_calls", "litert_ms", "tvm_ms", "macs"):
        table[column] = table[column].fillna(0)
    for column in ("litert_ops", "tvm_kernels"):
        table[column] = table[column].fillna("")
    table[["litert_calls", "tvm_calls"]] = table[["litert_calls", "tvm_calls"]].round().astype(int)
    return _finish(table, GAP_COLUMNS).sort_values("gap_ms", ascending=False, kind="stable").reset_index(drop=True)


def _finish(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    table["ratio"] = table["tvm_ms"] / table["litert_ms"].where(table["litert_ms"] > 0)
    table["litert_gflops"] = _rate(table["macs"], table["litert_ms"])
    table["tvm_gflops"] = _rate(table["macs"], table["tvm_ms"])
    table["gap_ms"] = table["tvm_ms"] - table["litert_ms"]
    total = table["gap_ms"].sum()
    table["gap_share"] = table["gap_ms"] / total if total else np.nan
    return table[columns + ["macs"]]


def by_kind(gap: pd.DataFrame) -> pd.DataFrame:
    """The gap table summed per kind (all conv1x1, all depthwise3x3, ...) plus a total row."""
    sums = gap.groupby("kind")[["litert_calls", "tvm_calls", "litert_ms", "tvm_ms", "macs"]].sum().reset_index()
    body = _finish(sums.copy(), KIND_COLUMNS).sort_values("gap_ms", ascending=False, kind="stable")
    total = _finish(sums.drop(columns="kind").sum().to_frame().T.assign(kind="total"), KIND_COLUMNS)
    table = pd.concat([body, total], ignore_index=True)
    table[["litert_calls", "tvm_calls"]] = table[["litert_calls", "tvm_calls"]].astype(int)
    return table
