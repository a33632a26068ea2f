# selfie-tvm Telegram bot.
#   docker compose --env-file .env up --build        (or: podman build -t selfie-bot .)
# The build stage compiles the TVM libraries for a generic x86-64-v3 CPU (AVX2+FMA), tuned from the
# committed records, so the image runs on any AVX2 machine; a failed build fails the image build.
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
# Editable install: the code reads original_model/registry.toml and results/ beside itself, as in a
# checkout (a plain install would leave them behind).
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir -e ".[bot,tune]"
ARG MODEL=selfie_multiclass_twin
ENV PATH=/venv/bin:$PATH \
    SELFIE_TVM_BUILD_DIR=/app/tvm_model \
    SELFIE_TVM_RESULTS_DIR=/app/results \
    SELFIE_TVM_CACHE_DIR=/app/cache/models \
    SELFIE_TVM_OFFLINE=1
# The twin is generated into the cache here (byte-identical every time); other models come from a
# mounted SELFIE_TVM_MODELS_DIR. No `|| true`: without libraries there is no image.
RUN TVM_NUM_THREADS=2 selfie-tvm compile --model ${MODEL} --tuned --portable \
    && ls tvm_model/${MODEL}/*/default.so tvm_model/${MODEL}/*/tuned.so

FROM python:3.11-slim
# An unprivileged user with a home and a writable cache (the model cache lives in /app/cache).
RUN useradd --system --uid 10001 --create-home --home-dir /home/bot --shell /usr/sbin/nologin bot
WORKDIR /app
COPY --from=build /venv /venv
COPY --from=build /app /app
RUN chown -R bot /app/cache
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/home/bot \
    SELFIE_TVM_BUILD_DIR=/app/tvm_model \
    SELFIE_TVM_RESULTS_DIR=/app/results \
    SELFIE_TVM_CACHE_DIR=/app/cache/models \
    SELFIE_BOT_TVM_TARGET=x86-64-v3 \
    SELFIE_BOT_THREADS=2
USER bot
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
