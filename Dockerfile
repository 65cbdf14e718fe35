# One image for every process type (web, worker, flower, metrics); the command picks which.
FROM python:3.11-slim

# CPU torch by default. The GPU profile of docker-compose.yml builds with the CUDA wheel index instead:
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

RUN useradd --create-home --uid 10001 torchweave
WORKDIR /app
COPY pyproject.toml README.md Procfile ./
COPY api ./api
COPY workers ./workers
COPY shared ./shared
COPY monitoring ./monitoring
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" . \
    && mkdir -p /data/cache && chown torchweave /data/cache

USER torchweave
ENV CACHE_DIR=/data/cache \
    HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1 \
    WORKER_ALIVE_FILE=/tmp/torchweave-engine-alive
EXPOSE 8000 5555 9100
CMD ["gunicorn", "-c", "api/gunicorn_conf.py", "api.wsgi:app"]
