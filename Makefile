# Two entry points: `make run` (server + examples on embedded SQLite) and `make test` (everything CI runs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RESTATE_NPM := .cache/restate

.PHONY: run test lint typecheck unit official-restate proto bench bench-setup bench-quick docs

# Two installs into one venv: `make run` needs only what the server and the examples import; everything else
# (tests, lint, benchmarks) adds the development tools (pytest, mypy, ruff, the official SDK, fuzzers, …).
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

$(RUNTIME): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(DEV): $(RUNTIME)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The name the other targets and scripts have always used for "the venv is ready for development".
$(BIN)/pyrestate: $(DEV)

# The official restate-server and CLI (npm packages ship linux-x64 binaries), the yardstick of the interop tests.
official-restate: $(RESTATE_NPM)/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server
$(RESTATE_NPM)/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server:
	mkdir -p $(RESTATE_NPM)
	cd $(RESTATE_NPM) && (test -f package.json || npm init -y >/dev/null) && \
	  npm install --silent --no-audit --no-fund @restatedev/restate-server@1.7.12 @restatedev/restate@1.7.12

proto: $(BIN)/pyrestate
	cd src && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. pyrestate/protocol/service_protocol.proto

lint: $(BIN)/pyrestate
	$(BIN)/ruff check src tests conformance examples bench fuzz
	$(BIN)/mypy src/pyrestate
	$(BIN)/mypy --strict src/pyrestate/protocol src/pyrestate/sdk src/pyrestate/testing src/pyrestate/server/partition

# Unit and integration tests; the conformance scenarios (our SDK on the official server, both SDKs on pyrestate);
# the examples on pyrestate.
test: $(BIN)/pyrestate official-restate lint
	$(BIN)/pytest -q tests
	PYRESTATE_CONFORMANCE_SDK=pyrestate PYRESTATE_CONFORMANCE_RUNTIME=official $(BIN)/pytest -q conformance
	PYRESTATE_CONFORMANCE_SDK=official PYRESTATE_CONFORMANCE_RUNTIME=pyrestate $(BIN)/pytest -q conformance
	PYRESTATE_CONFORMANCE_SDK=pyrestate PYRESTATE_CONFORMANCE_RUNTIME=pyrestate $(BIN)/pytest -q conformance
	PYRESTATE_EXAMPLES_RUNTIME=pyrestate $(BIN)/pytest -q examples
	FAULTS_RUNTIME=nodes FAULTS_SDKS=official $(BIN)/pytest -q tests/faults/test_random_programs.py tests/faults/test_set_workload.py
	PYRESTATE_WORKERS=2 FAULTS_SDKS=pyrestate $(BIN)/pytest -q tests/faults/test_chaos_counter.py

# The server on embedded SQLite (./.pyrestate), every example served and registered; Ctrl-C stops it all.
run: $(RUNTIME)
	$(BIN)/pyrestate dev examples.all:app

# Benchmark against the official restate-server (bench/README.md); writes bench/RESULTS.md.
bench-setup:
	bench/setup.sh

bench: $(BIN)/pyrestate official-restate bench-setup
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: $(BIN)/pyrestate official-restate
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

# Durability under faults (tests/faults/README.md): the CI run by default, a soak with e.g.
# `make chaos FAULTS_DURATION=600 FAULTS_SCALE=10 FAULTS_SEED=42` (FAULTS_* reach pytest through the env).
.PHONY: chaos
chaos: $(BIN)/pyrestate
	$(BIN)/pytest -q -p no:cacheprovider tests/faults

# The same suite against `--workers 2`, and against three nodes on PostgreSQL (tests/faults/README.md).
.PHONY: chaos-workers chaos-nodes
chaos-workers: $(BIN)/pyrestate
	PYRESTATE_WORKERS=2 $(BIN)/pytest -q -p no:cacheprovider tests/faults

chaos-nodes: $(BIN)/pyrestate
	FAULTS_RUNTIME=nodes $(BIN)/pytest -q -p no:cacheprovider tests/faults

# The settings reference in docs/operations.md, generated from the server's option table.
docs: $(BIN)/pyrestate
	$(BIN)/python -c 'import re, pathlib; from pyrestate.server.config import options_reference as o; \
	  p = pathlib.Path("docs/operations.md"); t = p.read_text(); \
	  p.write_text(re.sub(r"(?s)(<!-- options:begin -->\n).*?(<!-- options:end -->)", lambda m: m[1] + o() + m[2], t))'
