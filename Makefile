# Two commands do everything on a fresh machine:
#   make demo   - create .venv, install, run the end-to-end demo on generated audio
#   make test   - create .venv, install, run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: install demo test test-fast bench clean

$(STAMP): setup.py requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel
	$(PY) -m pip install --quiet -c requirements-lock.txt -e '.[test,aws,gcp]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/genreflow demo --output $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist *.egg-info

# Local Apache Flink cluster (scripts/flink.sh; everything under .flink/). See README, "Running on a cluster".
.PHONY: flink-setup flink-up flink-down test-flink test-scale-out
flink-setup: $(STAMP)
	bash scripts/flink.sh setup

flink-up: flink-setup
	bash scripts/flink.sh up

flink-down:
	bash scripts/flink.sh down

# The Flink tier: starts the cluster itself (fails, never skips, when Flink cannot start).
test-flink: flink-setup
	$(PY) -m pytest -m flink tests/test_flink.py

# Everything about running elsewhere: Flink, portable runner with external workers, Dataflow, packaging.
test-scale-out: flink-setup
	$(PY) -m pytest tests/test_flink.py tests/test_portable.py tests/test_dataflow.py tests/test_packaging.py
