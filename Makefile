# The two commands the README promises: `make demo` and `make test`.
# Everything they need is installed from this repository's own files (pyproject.toml + uv.lock).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV_COMPILE_BYTECODE := 1

.PHONY: setup test lint typecheck pytest demo bench clean

setup:
	@bash scripts/ensure-tools.sh
	@$(UV) sync --frozen --all-extras --quiet  # the toolkit, the server (default group), dev tools, gemini
	@# The MCPB CLI that validates `mcpctl bundle`'s extensions, pinned by package-lock.json.
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "warning: npm is missing: the extension (.mcpb) validation test will be skipped" >&2; \
	elif [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
		npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; \
	fi

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen hadolint Dockerfile

# Every module a laptop runs, typed as Windows and macOS see it, so a POSIX-only call cannot sneak in
# (the list, and what it leaves out, live in tests/packaging/dependency_sets.py). An ignore that one
# platform does not need is no finding: the plain run above checks every ignore.
typecheck: setup
	$(UV) run --frozen mypy
	@files="$$($(UV) run --frozen python -m tests.packaging.dependency_sets)" && \
	for platform in win32 darwin; do \
		echo "mypy --platform $$platform (laptop modules)"; \
		$(UV) run --frozen mypy --platform $$platform --follow-imports=silent --no-warn-unused-ignores \
			--cache-dir .mypy_cache/$$platform $$files || exit 1; \
	done

# Tests (and the demo's bundle and slim-install steps) run `uv` themselves: when setup installed it with
# `pip --user`, its directory may not be on PATH, so put it there.
UV_DIR = $$(dirname "$$(command -v uv || python3 -c 'import uv; print(uv.find_uv_bin())')")

pytest: setup
	PATH="$(UV_DIR):$$PATH" $(UV) run --frozen pytest

test: lint typecheck pytest

demo: setup
	$(UV) run --frozen python -m examples.demo

bench: setup
	$(UV) run --frozen python -m bench all

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
