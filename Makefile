# The two commands a newcomer needs: `make demo` and `make test`.
# Both create (or reuse) .venv from uv.lock, installing uv itself first if the machine lacks it.
# --compile-bytecode: the packages' .pyc are written once at install (about 20 s on 2 cores), so no
# process compiles prefect, great_expectations... from source again, even where
# PYTHONDONTWRITEBYTECODE is set (it is on our CI machines: every start then paid seconds of compiling).

UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV_LINK_MODE := copy

.PHONY: demo test bench install clean-data chromium bytecode

.venv/.synced: uv.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --compile-bytecode
	@touch $@

install: .venv/.synced

# biolake's own modules too (only the changed ones are compiled again; __pycache__ is not committed)
bytecode: .venv/.synced
	@$(UV) run --frozen python -m compileall -q flows transforms quality warehouse bench >/dev/null

demo: .venv/.synced bytecode
	$(UV) run --frozen biolake demo

# the report test renders HTML in Debian's chromium when it can be installed (root, apt); without it
# that one test is skipped and says so
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium could not be installed: the report screenshot test will be skipped"

# two worker processes (pytest-xdist), each test file whole in one of them (its module fixtures built
# once): 10 min on 2 cores where one process took 16.5; TEST_WORKERS=0 runs everything in one process
TEST_WORKERS ?= 2
test: .venv/.synced bytecode chromium
	$(UV) run --frozen pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

bench: .venv/.synced bytecode
	$(UV) run --frozen python -m bench.run

clean-data:
	rm -rf data
