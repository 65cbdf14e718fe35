FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml ./
COPY api ./api
COPY workers ./workers
COPY shared ./shared
COPY monitoring ./monitoring
COPY Procfile ./
# On a GPU host, install a CUDA build of torch instead (same version).
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e .
ENV CACHE_DIR=/data/cache
EXPOSE 8000 5555 9100
CMD ["gunicorn", "-c", "api/gunicorn_conf.py", "api.wsgi:app"]
