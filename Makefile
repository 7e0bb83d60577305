# The two commands a newcomer needs: `make demo` and `make test`.
# Both create (or reuse) .venv from uv.lock, installing uv itself first if the machine lacks it.

UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV_LINK_MODE := copy

.PHONY: demo test bench install clean-data

.venv/.synced: uv.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen
	@touch $@

install: .venv/.synced

demo: .venv/.synced
	$(UV) run --frozen biolake demo

test: .venv/.synced
	$(UV) run --frozen pytest

bench: .venv/.synced
	$(UV) run --frozen python -m bench.run

clean-data:
	rm -rf data
