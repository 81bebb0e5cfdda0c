# syntax=docker/dockerfile:1
# Multi-stage: build wheels and the virtualenv in one stage, run as a non-root user in a slim one.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bff ./bff
COPY auth ./auth
COPY push ./push
COPY adapters ./adapters
COPY sandbox ./sandbox
COPY migrations ./migrations
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -e .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ENV=prod API_HOST=0.0.0.0 SANDBOX_HOST=0.0.0.0
RUN groupadd --system sanxiang && useradd --system --gid sanxiang --home-dir /app --no-create-home sanxiang
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app
USER sanxiang
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os,urllib.request,sys; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"API_PORT\",\"8000\")}/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["sanxiang"]
CMD ["serve"]
