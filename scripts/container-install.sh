#!/bin/sh
# Install the server's locked environment for a container image; the Dockerfile runs exactly this.
#
#   container-install.sh [--dry-run] deps           the locked dependencies only (a layer that survives
#                                                   code changes)
#   container-install.sh [--dry-run] project        + the project itself, then the checks below
#   container-install.sh [--dry-run] lambda DIR     dependencies and project as plain packages in DIR
#                                                   (Lambda's task root), then the checks below
#
# Run from the project directory (pyproject.toml, uv.lock, mcp_sales/, provision/). Everything comes
# from uv.lock (--frozen): the toolkit and the `server` group, never the dev group, with bytecode
# compiled so every start is fast. The checks import the server and run one Prophet fit, so the
# bundled CmdStan model is known to work when the image is built, not when the first forecast is
# asked for. --dry-run prints the commands instead.
#
# Environment: UV (the uv binary, default `uv`), PYTHON (the interpreter for the checks; default the
# environment's), and uv's own variables (UV_PROJECT_ENVIRONMENT, UV_PYTHON, UV_LINK_MODE, UV_OFFLINE).
set -eu

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
    dry_run=1
    shift
fi
mode="${1:-}"
uv="${UV:-uv}"
export UV_COMPILE_BYTECODE="${UV_COMPILE_BYTECODE:-1}" UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1
export UV_LINK_MODE="${UV_LINK_MODE:-copy}"

run() {
    if [ "$dry_run" = 1 ]; then
        echo "+ $*"
    else
        "$@"
    fi
}

check() {
    # $1: the interpreter; the server must import, and Prophet must fit with its bundled model.
    run "$1" -c 'import mcp_sales.http.app, mcp_sales.http.lambda_handler, mcp_sales.server; print("server: imports ok")'
    run "$1" -c '
import logging
import pandas as pd
from prophet import Prophet
logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
frame = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=24, freq="MS"), "y": [float(i % 7) for i in range(24)]})
Prophet(yearly_seasonality=False, weekly_seasonality=False, daily_seasonality=False).fit(frame)
print("prophet: a fit ran with the bundled CmdStan model")'
}

case "$mode" in
    deps)
        run "$uv" sync --frozen --no-dev --group server --no-install-project
        ;;
    project)
        run "$uv" sync --frozen --no-dev --group server --no-editable
        venv="${UV_PROJECT_ENVIRONMENT:-.venv}"
        check "${PYTHON:-$venv/bin/python}"
        ;;
    lambda)
        target="${2:?usage: container-install.sh lambda DIR}"
        # Plain packages in the task root: Lambda's runtime imports from there, without a venv.
        requirements="${TMPDIR:-/tmp}/mcp-sales-requirements.txt"
        run "$uv" export --frozen --no-dev --group server --no-emit-project --no-hashes --output-file "$requirements"
        run "$uv" pip install --no-deps --target "$target" --requirement "$requirements"
        run "$uv" pip install --no-deps --target "$target" .
        if [ "$dry_run" = 1 ]; then
            echo "+ export PYTHONPATH=$target"
        fi
        export PYTHONPATH="$target"
        check "${PYTHON:-python3}"
        ;;
    *)
        echo "usage: container-install.sh [--dry-run] deps|project|lambda DIR" >&2
        exit 2
        ;;
esac
