# selfie-tvm Telegram bot. Build stage compiles the TVM libraries for the build machine's CPU
# (default.so, and tuned.so from the committed records); the runtime stage is slim.
#   docker compose --env-file .env up --build
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY runtime runtime
COPY tuning tuning
COPY benchmark benchmark
COPY bot bot
COPY original_model original_model
COPY results results
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir ".[bot,tune]"
ARG MODEL=selfie_multiclass_twin
# Libraries are built for this machine's CPU; mount tvm_model/ instead to bring your own.
ENV SELFIE_TVM_BUILD_DIR=/app/tvm_model
RUN TVM_NUM_THREADS=2 /venv/bin/selfie-tvm compile --model ${MODEL} --tuned \
    || echo "TVM libraries not built: the bot will use the engines it has"

FROM python:3.11-slim
WORKDIR /app
COPY --from=build /venv /venv
COPY --from=build /app /app
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 SELFIE_TVM_BUILD_DIR=/app/tvm_model
USER nobody
CMD ["python", "-m", "bot"]
