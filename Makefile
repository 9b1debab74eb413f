# evalstream: `make demo` runs the main job, `make test` runs the tests. Both start from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv tools test demo bench lint fmt clean

$(STAMP): pyproject.toml client/pyproject.toml constraints.txt service/evalstream_server/engine/_fastcount.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ./client -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# External tools used by the tests (buf, promtool, redis-server, ...): installed idempotently.
tools:
	bash scripts/install-tools.sh

test: venv tools
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/evalstream demo $(DEMO_ARGS)

# Benchmarks print ratios against references measured in the same run (bench/README.md).
# Peers (TorchMetrics, River) need `bash scripts/bench-venv.sh` and PY=.tools/bench-venv/bin/python.
bench: venv tools
	$(PY) bench/engine_ingest.py
	$(PY) bench/engine_query.py
	$(PY) bench/service_ingest.py
	$(PY) bench/service_query.py
	$(PY) bench/scrape.py
	$(PY) bench/durability.py
	$(PY) bench/replicas.py
	$(PY) bench/delayed_labels.py
	$(PY) bench/proxy.py
	$(PY) bench/triton_eval.py

lint: venv
	$(VENV)/bin/ruff check client service tests bench
	$(VENV)/bin/ruff format --check client service tests bench
	$(VENV)/bin/python -m mypy

fmt: venv
	$(VENV)/bin/ruff format client service tests bench
	$(VENV)/bin/ruff check --fix client service tests bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
	rm -f service/evalstream_server/engine/*.so
