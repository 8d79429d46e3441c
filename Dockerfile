# The service image: python 3.11 slim, non-root, gunicorn via `magenta-api serve`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 PORT=5000 MODEL_DIR=/data/models CACHE_DIR=/data/cache

# models.yaml in the working folder is the deployment's catalogue (MAGENTA_API_MODELS adds more).
WORKDIR /app
COPY pyproject.toml README.md models.yaml ./
COPY core ./core
COPY plugins ./plugins
COPY training ./training
# EXTRAS: optional extras, e.g. s3 (s3:// checkpoints), gcs, azure, buckets (all three)
ARG EXTRAS=""
# tinysoundfont (audio output) without PyAudio, which only plays to a sound card
RUN pip install ".${EXTRAS:+[$EXTRAS]}" && pip install --no-deps tinysoundfont==0.3.7 \
    && useradd --create-home --uid 10001 magenta \
    && mkdir -p /data/models /data/cache /data/keys && chown -R magenta /data

USER magenta
VOLUME ["/data"]
EXPOSE 5000
# Prefetch published checkpoints at build time with, e.g.:
#   RUN magenta-api fetch cat-mel_2bar_big
CMD ["sh", "-c", "exec magenta-api serve --host \"$HOST\" --port \"$PORT\""]
