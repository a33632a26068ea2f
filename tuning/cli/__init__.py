"""`selfie-tvm compile` and `selfie-tvm tune` (registered by runtime.cli)."""
