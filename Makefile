# First use creates .venv with the pinned requirements (pip, not uv: torch comes from local wheels).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_ROOT ?= data/synthetic


.PHONY: book test test-slurm venv clean-book

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 > /dev/null
	touch $(STAMP)

# The report, on the embedded synthetic default (see book/build.py for the pipeline).
book: $(STAMP)
	$(PY) book/build.py --data-root $(DATA_ROOT)

# The whole test suite but the SLURM cluster test; pytest's "no tests collected" (exit 5) counts as a failure.
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 -m "not slurm" tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests collected: failing"; exit 1; fi; exit $$rc

# The study grid through a throwaway single-node SLURM cluster (needs root; installs slurm-wlm, munge, slurmdbd and
# mariadb-server from the package index when missing). CI runs it after make test.
test-slurm: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -rs -s -m slurm tests/test_slurm_cluster.py; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-slurm: no tests collected: failing"; exit 1; fi; exit $$rc

clean-book:
	rm -rf book/_build book/generated
