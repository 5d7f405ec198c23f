# The lineage tracker's image: the `lineage` CLI, for the pipeline's workers and sinks
# (docker-compose.yml) and one-off commands (`docker compose run --rm sink lineage report`).
# Only the package is installed (no dev tools); it runs as an unprivileged user.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The package's own files only (.dockerignore keeps venvs, state and caches out).
COPY pyproject.toml README.md ./
COPY lineage lineage
COPY graph graph
COPY streams streams
COPY runtime runtime
COPY cli cli
COPY web web
RUN pip install . \
    && useradd --create-home --uid 10001 lineage \
    && mkdir -p /state \
    && chown lineage /state

USER lineage
WORKDIR /home/lineage
ENTRYPOINT ["lineage"]
CMD ["--help"]
