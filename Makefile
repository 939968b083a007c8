# speechbrain-ssv: the two commands of the README.
#   make quickstart   venv + install + mini corpus + train + evaluate + export + table
#   make test         venv + install + the whole test suite (what .ci/run calls)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= data/minivox

.PHONY: venv quickstart test lint bench clean-results

# constraints.txt pins the tested versions; setup.cfg only has ranges.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "speechbrain-ssv needs Python >= 3.10; found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,tts,minivox,faiss]'
	@touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(PY) recipes/quickstart.py --data_folder $(DATA) --output_folder results/quickstart

test: $(STAMP)
	$(PY) -m ruff check speechbrain_ssv recipes tests bench
	$(PY) -m yamllint -s recipes
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check speechbrain_ssv recipes tests bench
	$(PY) -m ruff format --check speechbrain_ssv recipes tests bench

bench: $(STAMP)
	$(PY) bench/bench_scoring.py
	$(PY) bench/bench_embeddings.py
	$(PY) bench/bench_train_step.py

clean-results:
	rm -rf results
