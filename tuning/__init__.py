"""TVM pipeline: import .tflite into Relax, build default and tuned libraries, tune, export."""
