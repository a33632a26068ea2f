"""`selfie-tvm compile` and `selfie-tvm tune`, registered through the `selfie_tvm.commands` entry points."""
