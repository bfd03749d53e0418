# Two entry points for newcomers (see README):
#   make demo   set up .venv and run the main job on sample_data/
#   make test   set up .venv with the development extras and run ruff + the test suite
# VENV may point elsewhere (CI keeps one outside the clone, keyed by a hash of the inputs).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP_RUN := $(VENV)/.alignimate-installed-run
STAMP_DEV := $(VENV)/.alignimate-installed-dev
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the packaging inputs change.
$(STAMP_RUN): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $@

$(STAMP_DEV): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP_RUN) $@

# The face timeline exits 1 because the sample folder holds one photo without a face, on purpose.
demo: $(STAMP_RUN)
	$(VENV)/bin/alignimate faces sample_data/faces -o $(DEMO_OUT)/timeline.gif --max-width 384 --overwrite || [ $$? -eq 1 ]
	$(VENV)/bin/alignimate register sample_data/scenes --out $(DEMO_OUT)/scenes --model homography --overwrite
	$(VENV)/bin/alignimate animate $(DEMO_OUT)/scenes -o $(DEMO_OUT)/scenes.gif --fps 4 --overwrite
	@echo "demo written to $(DEMO_OUT)/: timeline.gif (faces, frames and contact sheet in timeline_frames/), scenes.gif"

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check .

# One OpenMP thread for the tests: they check correctness, not speed (benchmarks/ measures that), and
# on a small shared machine PyTorch's spin-waiting threads made the suite over 10x slower.
test: lint
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP_DEV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench]'
	$(PY) benchmarks/core_ops.py
	$(PY) benchmarks/registration.py --quick

clean-venv:
	rm -rf $(VENV)
