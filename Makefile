# lstmlab developer entry points. `make demo` and `make test` each work on a fresh clone.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(TORCH_VERSION)
DEMO_DIR := runs/demo
PTB_SHARED := ../shared/data/ptb

.PHONY: install demo test lint bench clean

install: $(STAMP)

# Torch first, pinned, so the `torch>=2.4` range in pyproject is already met and
# pip never pulls the multi-GB CUDA wheels. Re-runs only when pyproject changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: install
	$(VENV)/bin/lstmlab prepare builtin
	$(VENV)/bin/lstmlab train recipes/tiny/lstm.yaml --run-dir $(DEMO_DIR) --force
	$(VENV)/bin/lstmlab eval $(DEMO_DIR) --split all
	$(VENV)/bin/lstmlab sample $(DEMO_DIR) --prime "The " --length 300 --temperature 0.8

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile

# Reference-size throughput of every registered cell vs torch.nn.LSTM -> benchmarks/results/
bench: install
	$(VENV)/bin/lstmlab bench

lint: install
	$(VENV)/bin/ruff check lstmlab tests benchmarks
	$(VENV)/bin/ruff format --check lstmlab tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
