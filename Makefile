# Two commands do everything on a fresh machine:
#   make demo   - create .venv, install, run the end-to-end demo on generated audio
#   make test   - create .venv, install, set up Flink and Prism (flink-setup, prism-setup), run the
#                 whole test suite (what CI runs). Needs Java 17, Maven and Go on the PATH.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Pretrained musicnn checkpoints for `train --backbone` (training/musicnn_weights.py): taken out of
# the musicnn==0.1.0 wheel fetched with `pip download --no-deps` (never installed: it pins numpy<1.17).
GENREFLOW_CACHE ?= $(CURDIR)/.cache
export GENREFLOW_CACHE
WEIGHTS := $(GENREFLOW_CACHE)/musicnn/.complete
DEMO_DIR ?= demo-output

.PHONY: install demo test test-fast bench clean

$(STAMP): setup.py requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel
	$(PY) -m pip install --quiet -c requirements-lock.txt -e '.[test,aws,gcp]'
	touch $(STAMP)

$(WEIGHTS): | $(STAMP)
	$(PY) -m training.musicnn_weights

install: $(STAMP) $(WEIGHTS)

demo: install
	$(VENV)/bin/genreflow demo --output $(DEMO_DIR)

# The Flink and Prism tiers are part of the suite; they fail (never skip) without their setup.
test: install flink-setup prism-setup
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist *.egg-info  # keeps .cache (the musicnn weights)

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

# Prism, Beam's portable local runner (a Go binary), built from the Go module proxy into .prism/bin
# (git-ignored). Idempotent: skipped when the binary there is already this Beam release (Go's build
# info). Go's module and build caches (`go env GOMODCACHE GOCACHE`) live outside the clone, so a
# second clone links it in seconds. Use it with `--prism_location .prism/bin/prism` (docs/running-at-scale.md, "Runners").
PRISM_VERSION := v2.77.0
PRISM := .prism/bin/prism
.PHONY: prism-setup test-prism
prism-setup:
	@if [ -x $(PRISM) ] && go version -m $(PRISM) 2>/dev/null | grep -qE '^\s+mod\s+github.com/apache/beam/sdks/v2\s+$(PRISM_VERSION)\s'; then \
	  echo "prism $(PRISM_VERSION) already installed: $(PRISM)"; \
	else \
	  command -v go >/dev/null || { echo "prism-setup: Go is needed to build Prism (https://go.dev/dl/)" >&2; exit 1; }; \
	  echo "prism-setup: go install github.com/apache/beam/sdks/v2/go/cmd/prism@$(PRISM_VERSION) (minutes the first time)"; \
	  GOBIN="$(CURDIR)/.prism/bin" go install github.com/apache/beam/sdks/v2/go/cmd/prism@$(PRISM_VERSION) && echo "prism: $(PRISM)"; \
	fi

test-prism: $(STAMP) prism-setup
	$(PY) -m pytest tests/test_prism.py
