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
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
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
