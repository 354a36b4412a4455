# lstmlab developer entry points. `make demo` and `make test` each work on a fresh clone.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(TORCH_VERSION)
DEMO_DIR := runs/demo
PTB_SHARED := ../shared/data/ptb
LSTMLAB := $(VENV)/bin/lstmlab
# `make zoo`: every recipes/tiny/*.yaml with its learning rate tuned (`lstmlab tune`,
# ZOO_TRIALS trials on ZOO_TUNE_TOKENS tokens; ZOO_TRIALS=0 keeps the recipes' own), then
# trained with each of ZOO_SEEDS on an equal token budget (ZOO_TOKENS), then compared;
# `make zoo ZOO_MINUTES=2` trains on equal step time instead. Every other budget of the
# recipes is nulled, so the final figures compare the same amount of training.
ZOO_TOKENS ?= 1000000
ZOO_MINUTES ?=
ZOO_SEEDS ?= 0,1,2
ZOO_TRIALS ?= 5
ZOO_TUNE_TOKENS ?= 500000
ZOO_DIR ?= runs/zoo
NO_OTHER_BUDGET := --set train.max_steps=null --set train.max_epochs=null
ifeq ($(strip $(ZOO_MINUTES)),)
ZOO_BUDGET := --set train.max_tokens=$(ZOO_TOKENS) --set train.max_minutes=null
else
ZOO_BUDGET := --set train.max_minutes=$(ZOO_MINUTES) --set train.max_tokens=null
endif
ZOO_BUDGET += $(NO_OTHER_BUDGET)
TUNE_BUDGET := --set train.max_tokens=$(ZOO_TUNE_TOKENS) --set train.max_minutes=null $(NO_OTHER_BUDGET)

.PHONY: install demo test lint bench clean zoo

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
	$(VENV)/bin/lstmlab prepare builtin --force  # replaces only lstmlab's own corpus folder
	$(VENV)/bin/lstmlab train recipes/tiny/lstm.yaml --run-dir $(DEMO_DIR) --force
	$(VENV)/bin/lstmlab eval $(DEMO_DIR) --split all
	$(VENV)/bin/lstmlab sample $(DEMO_DIR) --prime "The " --length 300 --temperature 0.8 --seed 1

# PTB from PTB_SHARED (a folder with ptb.char.*.txt; `make zoo PTB_SHARED=DIR`) when it is
# there, else the built-in corpus. Each run trains on ZOO_BUDGET, is scored on test, and the
# table and the curves land in docs/results.{md,png}; README.md's Results section gets the
# seed-group table (docs/results-summary.md).
# A recipe that fails is reported and the others are still compared. `--force` replaces
# only lstmlab's own run folders (never `rm -rf`: ZOO_DIR may name any folder); other runs
# already in ZOO_DIR are compared too, so give each zoo its own folder.
zoo: install
	if [ -f $(PTB_SHARED)/ptb.char.train.txt ]; then corpus=ptb; $(LSTMLAB) prepare ptb --source $(PTB_SHARED) --force; \
	else corpus=builtin; $(LSTMLAB) prepare builtin --force; fi && \
	recipes=recipes/tiny && if [ "$(ZOO_TRIALS)" -gt 0 ]; then recipes=; \
	  for recipe in recipes/tiny/*.yaml; do cell=$$(basename $$recipe .yaml); \
	    $(LSTMLAB) tune $$recipe --trials $(ZOO_TRIALS) --study-dir $(ZOO_DIR)/tune/$$cell \
	      --set data.corpus=$$corpus $(TUNE_BUDGET) && recipes="$$recipes $(ZOO_DIR)/tune/$$cell/best.yaml" \
	      || echo "zoo: tuning $$cell failed"; done; fi && \
	{ $(LSTMLAB) train $$recipes --seeds $(ZOO_SEEDS) --runs-dir $(ZOO_DIR)/runs --force \
	    --set data.corpus=$$corpus $(ZOO_BUDGET) || echo "zoo: some recipes failed"; }
	for run in $(ZOO_DIR)/runs/*/; do $(LSTMLAB) eval $$run --split test || echo "zoo: eval of $$run failed"; done
	mkdir -p docs
	$(LSTMLAB) compare $(ZOO_DIR)/runs --format markdown --context --plot docs/results.png > docs/results.md
	awk 'NR == 1 {print; print ""} /^final:/ {print; print ""} /^\| recipe/ {group = 1} group' \
	    docs/results.md > docs/results-summary.md
	sed -i -e '/results:begin/,/results:end/{/results:begin/!{/results:end/!d}}' \
	    -e '/results:begin/r docs/results-summary.md' README.md

# Two workers, one thread each: torch's default of a thread per core in every worker
# oversubscribes the cores, and each step then waits on the other worker's threads.
test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile

# Reference-size throughput of every registered cell vs torch.nn.LSTM -> benchmarks/results/
bench: install
	$(VENV)/bin/lstmlab bench

lint: install
	$(VENV)/bin/ruff check lstmlab tests benchmarks
	$(VENV)/bin/ruff format --check lstmlab tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
