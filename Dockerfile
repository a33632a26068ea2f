# selfie-tvm Telegram bot.
#   mkdir -p secrets && printf %s "$TOKEN" > secrets/telegram_bot_token && openssl rand -hex 24 > secrets/redis_password
#   docker compose up --build        (or: podman build -t selfie-bot .)
# The build stage compiles the TVM libraries for a generic x86-64-v3 CPU (AVX2+FMA), tuned from the
# committed records, so the image runs on any AVX2 machine, whatever its core count; a failed build
# fails the image build. The runtime stage holds only what the bot runs: no tuning extras, no tuning
# code or databases.
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
# checkout (a plain install would leave them behind). /venv-bot is the bot's environment as it will
# be (made at /venv, its final path); the tuning extras are added to /venv for the compile step only.
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir -e ".[bot]" && cp -a /venv /venv-bot \
    && /venv/bin/pip install --no-cache-dir -e ".[bot,tune]"
# Unset: what `selfie-tvm compile` picks by default, the main model or, offline as here, its twin.
ARG MODEL=
ENV PATH=/venv/bin:$PATH \
    SELFIE_TVM_BUILD_DIR=/app/tvm_model \
    SELFIE_TVM_RESULTS_DIR=/app/results \
    SELFIE_TVM_CACHE_DIR=/app/cache/models \
    SELFIE_TVM_OFFLINE=1
# The twin is generated into the cache here (byte-identical every time); other models come from a
# mounted SELFIE_TVM_MODELS_DIR. No `|| true`: without libraries there is no image.
RUN TVM_NUM_THREADS=2 selfie-tvm compile ${MODEL:+--model "$MODEL"} --tuned --portable \
    && ls tvm_model/*/*/default.so tvm_model/*/*/tuned.so
# What the bot reads: its code, the registry, the libraries, the model cache, and the benchmark p50s;
# readable by the unprivileged user (the cache writes its files 0600).
RUN mkdir -p /bot/results && cp -a pyproject.toml README.md runtime bot original_model tvm_model cache /bot/ \
    && cd results && find . \( -name latency_stats.csv -o -name environment.json \) -exec cp --parents {} /bot/results/ \; \
    && chmod -R a+rX /bot

FROM python:3.11-slim
# An unprivileged user; the bot writes nothing (the compose service runs read-only).
RUN useradd --system --uid 10001 --create-home --home-dir /home/bot --shell /usr/sbin/nologin bot
WORKDIR /app
COPY --from=build /venv-bot /venv
COPY --from=build /bot /app
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/home/bot \
    SELFIE_TVM_BUILD_DIR=/app/tvm_model \
    SELFIE_TVM_RESULTS_DIR=/app/results \
    SELFIE_TVM_CACHE_DIR=/app/cache/models \
    SELFIE_TVM_OFFLINE=1 \
    SELFIE_BOT_THREADS=2 \
    SELFIE_BOT_WEBHOOK_HOST=0.0.0.0 \
    SELFIE_BOT_WEBHOOK_PORT=8080
USER bot
# The webhook server (when SELFIE_BOT_WEBHOOK_URL is set; long polling listens on nothing). Put a TLS
# proxy in front: Telegram posts only to HTTPS.
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
