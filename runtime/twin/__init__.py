"""Architecture twin of selfie_multiclass_256x256: real layer graph, synthetic weights.

The twin exists because the real model cannot be downloaded offline. Its latency is
representative of the real model; its masks are meaningless.
"""

from __future__ import annotations

from . import architecture
from .graph import GraphBuilder
from .tflite_writer import serialise

TWIN_SEED = 20240611
TWIN_VERSION = 1  # bump when the architecture or the weight recipe changes
DESCRIPTION = (
    f"selfie_multiclass_256x256 architecture twin v{TWIN_VERSION} (selfie-tvm): exact layer graph, "
    "synthetic deterministic weights. Latency is representative; masks are meaningless."
)


def build_graph(seed: int = TWIN_SEED) -> GraphBuilder:
    g = GraphBuilder(seed)
    architecture.build(g)
    return g


def twin_bytes(seed: int = TWIN_SEED) -> bytes:
    """The twin's .tflite bytes; another seed gives the same architecture with other weights."""
    return serialise(build_graph(seed), DESCRIPTION)
