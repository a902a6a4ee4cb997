# syntax=docker/dockerfile:1
# The mcp_sales HTTP server as a container image (see docs/DEPLOY.md).
#
#   docker build -t mcp-sales .                     server: stateless streamable HTTP on :8000 (ECS)
#   docker build --target lambda -t mcp-sales-fn .  the Lambda function image
#
# Both install the locked environment with scripts/container-install.sh (uv sync --frozen --no-dev from
# uv.lock), which also runs one Prophet fit so the bundled CmdStan model is known to work at build
# time. No secret is baked in: the API key arrives at run time (MCP_API_KEY from the orchestrator's
# secret store, or MCP_API_KEY_SECRET_ARN on Lambda).

ARG PYTHON_VERSION=3.11

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# --- build: the virtual environment in /app/.venv ------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON=/usr/local/bin/python3
COPY pyproject.toml uv.lock README.md ./
COPY scripts/container-install.sh scripts/
# The dependencies first, in their own layer: a code change does not reinstall them.
RUN --mount=type=cache,target=/root/.cache/uv sh scripts/container-install.sh deps
COPY mcp_sales/ mcp_sales/
COPY provision/ provision/
RUN --mount=type=cache,target=/root/.cache/uv sh scripts/container-install.sh project

# --- lambda: AWS's Python base image (it carries the Lambda runtime client) -------------------------
FROM public.ecr.aws/lambda/python:3.12 AS lambda
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /build
COPY pyproject.toml uv.lock README.md ./
COPY scripts/container-install.sh scripts/
COPY mcp_sales/ mcp_sales/
COPY provision/ provision/
RUN --mount=type=cache,target=/root/.cache/uv \
    UV_PYTHON=/var/lang/bin/python3.12 PYTHON=/var/lang/bin/python3.12 \
    sh scripts/container-install.sh lambda "${LAMBDA_TASK_ROOT}" \
    && rm -rf /build
WORKDIR ${LAMBDA_TASK_ROOT}
ENV MCP_SALES_CACHE_DIR=/tmp
CMD ["mcp_sales.http.lambda_handler.handler"]

# --- server: what ECS runs; the last stage, so the default target ---------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS server
RUN groupadd --system --gid 10001 mcp \
    && useradd --system --uid 10001 --gid mcp --home-dir /home/mcp --create-home --shell /usr/sbin/nologin mcp
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/mcp
EXPOSE 8000
# Python, not curl (the image has none); urlopen raises on a 503, so "starting" counts as unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
ENTRYPOINT ["mcp-sales"]
# Stateless streamable HTTP: any replica answers any request. The API key comes from MCP_API_KEY at
# run time; --data (or MCP_SALES_DATA) says where the sales data is, e.g. s3://bucket/key.
CMD ["serve", "--transport", "streamable-http", "--stateless", "--host", "0.0.0.0", "--port", "8000", "--cache-dir", "/home/mcp/cache"]
