# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build -t sanxiang-bff .                        the production image (API, worker, migrate)
#   docker build --target sandbox -t sanxiang-sandbox .  the simulated upstreams, for demos and tests only
# The production image holds the BFF's packages installed as a wheel built with SANXIANG_DIST=production:
# no sandbox code, no embedded PostgreSQL/Redis, no test tools (tests/test_packaging.py builds the same
# install into a fresh virtualenv and lists what it holds).
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY bff ./bff
COPY auth ./auth
COPY push ./push
COPY adapters ./adapters
COPY migrations ./migrations
RUN python -m venv /opt/venv && SANXIANG_DIST=production /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip uninstall -y pip setuptools

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ENV=prod API_HOST=0.0.0.0 DATA_DIR=/data
RUN groupadd --system --gid 10001 sanxiang \
    && useradd --system --uid 10001 --gid sanxiang --home-dir /data --no-create-home sanxiang \
    && mkdir -p /data && chown sanxiang:sanxiang /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /data
USER sanxiang
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os,urllib.request,sys; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"API_PORT\",\"8000\")}/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["sanxiang"]
CMD ["serve"]

# The upstream simulations (never deployed to production): the whole project with its `run` extra.
FROM python:3.11-slim AS sandbox
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 SANDBOX_HOST=0.0.0.0
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY bff ./bff
COPY auth ./auth
COPY push ./push
COPY adapters ./adapters
COPY sandbox ./sandbox
COPY migrations ./migrations
RUN pip install '.[run]'
EXPOSE 8100
ENTRYPOINT ["python", "-m", "sandbox"]
