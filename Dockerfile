# Fareway gateway image: `docker build -t fareway .`
#   docker run -p 8080:8080 -e OPENAI_API_KEY=... -e FAREWAY_MASTER_KEY=... fareway
# State (keys, the SQLite ledger) lives in the /data volume (FAREWAY_HOME).  For the scale
# deployment (Postgres ledger + Redis cache) see compose.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FAREWAY_HOME=/data

WORKDIR /app
COPY pyproject.toml README.md fareway.example.toml ./
COPY src ./src
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --create-home fareway \
    && mkdir -p /etc/fareway \
    && chown fareway /data

USER fareway
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["fareway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
