# One image for every process type (web, worker, flower, metrics); the command picks which.
FROM python:3.11-slim

# CPU torch by default. GPU images (docker-compose.gpu.yml) take PyPI's own Linux wheel, the CUDA build
# (CUDA 13.0 for torch 2.13.0):
#   --build-arg TORCH_INDEX_URL=https://pypi.org/simple
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

RUN useradd --create-home --uid 10001 torchweave
WORKDIR /app
COPY pyproject.toml README.md Procfile ./
COPY api ./api
COPY workers ./workers
COPY shared ./shared
COPY monitoring ./monitoring
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" . \
    && mkdir -p /data/cache /data/models && chown torchweave /data/cache

USER torchweave
# MODEL_DIR: local models (models/ is not in the image; docker-compose.yml mounts ./models here).
ENV CACHE_DIR=/data/cache \
    MODEL_DIR=/data/models \
    HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1 \
    WORKER_ALIVE_FILE=/tmp/torchweave-engine-alive
EXPOSE 8000 5555 9100
CMD ["gunicorn", "-c", "api/gunicorn_conf.py", "api.wsgi:app"]
