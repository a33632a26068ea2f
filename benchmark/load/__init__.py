"""Throughput at a tail-latency bound: the project's engines under MLPerf LoadGen's scenarios.

    python -m benchmark.load --model M --engines litert,tvm-tuned [--layouts 1x2,2x1] [--bot]

- `options.py`: layouts (instances x threads), scenarios, the run's settings; bad ones are one line.
- `driver.py`: LoadGen's SystemUnderTest and QuerySampleLibrary over the real photos, one scenario run.
- `logs.py`: LoadGen's summary file read back, its logs kept beside the report.
- `search.py`: the Server scenario's highest rate whose p99 stays under the bound (bisection).
- `configuration.py`: one engine and layout measured in a fresh process, as the benchmark isolates engines.
- `section.py`: throughput.md, the latency-vs-offered-load plot, the report's section, leaderboard columns.
"""
