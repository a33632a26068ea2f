"""TVM pipeline: import .tflite into Relax, build default and tuned libraries, tune, export."""

# Trials a tuning run measures unless told otherwise (`selfie-tvm tune`, and the benchmark when a
# CPU's vector ISA has no records yet).
DEFAULT_BUDGET = 2000
