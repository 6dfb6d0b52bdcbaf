# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# The extras the tests, `make demo` and `make lint` (the docs site) use; pyproject.toml lists
# them all.
EXTRAS := dev,plots,digits,images,data,hub,tensorboard,docs

.PHONY: install test demo lint format clean datasets biopython-doc

# torch is installed first, pinned, so that `torch>=...` in pyproject is already satisfied
# and pip never pulls the CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
# Peers of tests/interop, without their dependencies (which would replace torch).
	$(BIN)/python -m pip install --quiet --no-deps torchcfm flow_matching || echo \
		"note: could not install torchcfm / flow_matching; their interop tests are skipped"
	touch $(STAMP)

install: $(STAMP) datasets

# Real data that ships as Debian packages, installed where apt-get is available and we are
# root: Biopython's test structures (the protein sets of flowmatch.data.manifold_sets) and
# Fashion-MNIST's IDX files (flowmatch.data.fashion). Without them those data sets and their
# tests are skipped, saying why.
DEBIAN_DATA := python-biopython-doc dataset-fashion-mnist
DEBIAN_MARKERS := /usr/share/doc/python-biopython-doc/Tests/PDB /usr/share/datasets/fashion-mnist
datasets:
	@missing=0; for d in $(DEBIAN_MARKERS); do [ -d $$d ] || missing=1; done; \
	if [ $$missing = 1 ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			$(DEBIAN_DATA); } >/dev/null 2>&1 || echo "note: apt-get could not install" \
			"$(DEBIAN_DATA); the data sets they hold and their tests will be skipped"; \
	fi

# The old name of the target above.
biopython-doc: datasets

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

demo: $(STAMP)
	$(BIN)/flowmatch demo --out runs/demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
