"""Parse shared/reference/selfie_multiclass_256x256.relay.txt: the real model's graph as TVM printed it.

Only facts are read from it (op types, shapes, conv attributes) so the twin can be checked
against the real model; nothing from it is copied into the project.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "selfie_multiclass_256x256.relay.txt"

_LINE = re.compile(r"^\s*(?:%(\d+) = )?([\w.]+)\((.*)\) /\* ty=Tensor\[\(([\d, ]+)\), float32\] \*/;?$")
_PARAM = re.compile(r"%(\w+): Tensor\[\(([\d, ]+)\), float32\]")


@dataclass(frozen=True)
class RefConv:
    kind: str  # "conv", "depthwise", "transpose"
    in_shape: tuple[int, ...]  # NCHW
    out_shape: tuple[int, ...]  # NCHW
    kernel: tuple[int, int]
    stride: int

    @property
    def macs(self) -> int:
        n, cin, _, _ = self.in_shape
        cout = self.out_shape[1]
        k = self.kernel[0] * self.kernel[1]
        if self.kind == "transpose":
            return math.prod(self.in_shape) * k * cout
        per_output = k if self.kind == "depthwise" else k * cin
        return math.prod(self.out_shape) * per_output


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.replace(" ", "").split(",") if s)


def parse(path: Path = REFERENCE) -> tuple[Counter, list[RefConv]]:
    shapes: dict[str, tuple[int, ...]] = {}
    ops: Counter = Counter()
    convs: list[RefConv] = []
    for line in path.read_text().splitlines():
        if line.startswith("def @main"):
            shapes.update({name: _shape(s) for name, s in _PARAM.findall(line)})
            continue
        m = _LINE.match(line)
        if not m:
            continue
        var, op, args, out = m.group(1), m.group(2), m.group(3), _shape(m.group(4))
        if var is not None:
            shapes[var] = out
        ops[op] += 1
        if op in ("nn.conv2d", "nn.conv2d_transpose"):
            src = re.match(r"%(\w+)", args).group(1)
            kernel = tuple(int(v) for v in re.search(r"kernel_size=\[(\d+), (\d+)\]", args).groups())
            stride_m = re.search(r"strides=\[(\d+), \d+\]", args)
            groups_m = re.search(r"groups=(\d+)", args)
            groups = int(groups_m.group(1)) if groups_m else 1
            kind = "transpose" if op == "nn.conv2d_transpose" else ("depthwise" if groups > 1 else "conv")
            convs.append(RefConv(kind, shapes[src], out, kernel, int(stride_m.group(1)) if stride_m else 1))
    return ops, convs
