# `make demo` and `make test` create .venv when missing (torch from this machine's local wheels), then run.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.jembench-installed
DOCS_STAMP := $(VENV)/.jembench-docs-installed

.PHONY: demo test lint test-slow test-real test-wheel docs bench gpu-smoke install clean results leaderboards \
	figures resummarize reference-train reference-eval reference-runs baseline-seeds baseline-fixed ci-matrix doc-tables

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jembench demo

test: $(STAMP)
	$(PY) -m pytest -q

# Static checks (CI runs them before the tests): ruff's rules (pyproject [tool.ruff]) and mypy (pyproject
# [tool.mypy]: the public API and the results layer fully annotated).
lint: $(STAMP)
	$(VENV)/bin/ruff check jembench reference_models tests benchmarks tools
	$(VENV)/bin/mypy jembench

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The committed CIFAR-10 reference checkpoints re-evaluated on the shared data (../shared/data) and checked against
# their committed records (tests/test_real_data.py; a few minutes). CI runs it after `make test`.
test-real: $(STAMP)
	$(PY) -m pytest -q -m slow tests/test_real_data.py

# The wheel in a fresh virtual environment, run from a folder outside the checkout (minutes: it installs torch).
# JEMBENCH_WHEEL_VENV=DIR reuses a virtual environment between runs.
test-wheel: $(STAMP)
	$(PY) -m pytest -q -m wheel tests/test_wheel.py

# The documentation site (mkdocs.yml, docs/): built into site/ with every warning an error — a broken link or anchor,
# a page missing from the nav, a docstring the API reference cannot render. Installs the `docs` extra first.
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(PY) -m benchmarks

# jembench end to end on a GPU in under ten minutes (benchmarks/gpu_smoke.py): every trainer + resume, one
# paper-scale JEM iteration with its peak memory, every suite against the CPU, --compile, torchrun DDP with two or
# more GPUs, python -m benchmarks --quick. Exits 2 at once without a GPU; DEVICE=cpu is the CPU dry run.
DEVICE ?= cuda
gpu-smoke: $(STAMP)
	$(PY) -m benchmarks.gpu_smoke --device $(DEVICE)

clean:
	rm -rf $(VENV) runs .pytest_cache site

# Regenerate the committed demo records and the rendered leaderboard (results/runs/demo, results/leaderboard.md).
results: $(STAMP)
	rm -rf results/runs/demo runs/demo
	$(VENV)/bin/jembench demo --records results/runs/demo --no-progress
	$(VENV)/bin/jembench robustness-plot results/runs/demo/softmax/robustness.json results/runs/demo/jem/robustness.json \
	  --kind linf --kind boundary -o results/runs/demo/robustness_softmax_vs_jem.png
	$(MAKE) leaderboards

# The committed baseline of the README's CI job (results/runs/demo-seeds/jem): the job's train and eval lines with
# seeds 0-9, one run at a time (checkpoints under runs/demo-seeds). Interrupted runs continue with the next seed.
baseline-seeds: $(STAMP)
	$(PY) -m benchmarks.seed_baseline --seeds 0-9

# The committed baseline of docs/check.md's fixed-checkpoint CI job (results/runs/demo-fixed/jem): the retrained job's
# model with its default seed (one thread), exported without optimizer state or buffer, and the job's eval line's records.
baseline-fixed: $(STAMP)
	$(PY) -m benchmarks.fixed_baseline

# Does the README's CI job pass on fresh retrainings and fail on degraded models? (benchmarks/results/ci-matrix.json)
ci-matrix: $(STAMP)
	$(PY) -m benchmarks.ci_matrix --seeds 101-105 --threads 1 2 --degraded

# Render the committed leaderboards from the committed records (rendering only: nothing is re-evaluated;
# tests/test_labels.py checks that the committed files are what this renders), then the docs' tables.
leaderboards: $(STAMP)
	$(VENV)/bin/jembench leaderboard results/runs/demo --table all --format md --out results/leaderboard.md
	$(VENV)/bin/jembench leaderboard $(CPU_RUNS) --table all --format md --out results/leaderboard-cifar10-cpu.md
	$(MAKE) doc-tables

# The result tables and paper figures of docs/*.md (regions marked <!-- BEGIN generated: NAME -->, inline
# <!-- published: ... -->) written from the committed records and results/published (tools/docs_tables.py);
# tests/test_docs_tables.py checks that the committed pages are what this writes.
doc-tables: $(STAMP)
	$(PY) tools/docs_tables.py

# Recompute what the committed robustness records derive from their per-input details (medians over the attacked
# inputs, standard errors, attack sanity checks) after a change to jembench/suites/robustness/summary.py or
# sanity.py, then render the leaderboards again: nothing is re-run, no measured number changes.
resummarize: $(STAMP)
	$(VENV)/bin/jembench resummarize results/runs
	$(MAKE) leaderboards

# Draw the committed records' figures again from their details (after a change to jembench/figures/): nothing is
# re-run, no number changes. Sample grids and OOD histograms of records without stored histograms stay as they are.
figures: $(STAMP)
	$(VENV)/bin/jembench redraw results/runs
	$(VENV)/bin/jembench robustness-plot results/runs/demo/softmax/robustness.json results/runs/demo/jem/robustness.json \
	  --kind linf --kind boundary -o results/runs/demo/robustness_softmax_vs_jem.png

# Reference runs on real data (issue 13): the five methods with their cpu presets on the shared CIFAR-10 JPEG copy,
# compact checkpoints + every suite's records and figures under results/runs/cifar10-cpu/, and the leaderboard.
# Long (about 25 min of training per method on 2 cores); interrupted runs continue where they stopped.
SHARED ?= ../shared/data
CPU_RUNS := results/runs/cifar10-cpu
CPU_METHODS ?= jem jempp sada_jem softmax softmax_sam
CIFAR_LABEL := CIFAR-10 (JPEG q75 copy)

reference-train: $(STAMP)
	for m in $(CPU_METHODS); do \
	  if [ -f runs/cifar10-cpu/$$m/last.pt ]; then resume="--resume runs/cifar10-cpu/$$m"; else resume=""; fi; \
	  $(VENV)/bin/jembench train $$m --preset cpu --dataset folder:$(SHARED)/cifar10-jpeg \
	    --dataset-label "$(CIFAR_LABEL)" --name $$m-cifar10-cpu --out runs/cifar10-cpu/$$m $$resume --no-progress \
	    || exit 1; \
	done

# Compact copies of the trained checkpoints (weights + 1,000 uint8 buffer images), the training evidence (config,
# events with wall/CPU time, log, buffer samples), every suite under the cpu protocols, and the leaderboard.
reference-eval: $(STAMP)
	for m in $(CPU_METHODS); do \
	  mkdir -p $(CPU_RUNS)/$$m/train && \
	  $(VENV)/bin/jembench export runs/cifar10-cpu/$$m/last.pt $(CPU_RUNS)/$$m/last.pt --buffer-n 1000 && \
	  cp runs/cifar10-cpu/$$m/config.json runs/cifar10-cpu/$$m/events.jsonl runs/cifar10-cpu/$$m/log.csv \
	     $(CPU_RUNS)/$$m/train/ && \
	  (cp runs/cifar10-cpu/$$m/samples.png $(CPU_RUNS)/$$m/train/ 2>/dev/null || true) && \
	  $(VENV)/bin/jembench eval $(CPU_RUNS)/$$m/last.pt --suite all --preset cpu --out $(CPU_RUNS)/$$m \
	    --data-root $(SHARED) --no-progress && \
	  $(VENV)/bin/jembench eval $(CPU_RUNS)/$$m/last.pt --suite ood --protocol ood-ci --data-root $(SHARED) \
	    --out $(CPU_RUNS)-ci/$$m/last-ood.json --no-progress || exit 1; \
	done
	$(MAKE) leaderboards

reference-runs: reference-train reference-eval
