# Two commands on a fresh machine:
#   make demo   install, check the whole zoo, summarise and run a model
#   make test   install and run the test suite (what CI runs)
PY     ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,tvm,bench]'
	touch $@

demo: setup
	$(BIN)/dlc check specs/*.dln
	@echo "all $$(ls specs/*.dln | wc -l) zoo specs check"
	$(BIN)/dlc info specs/resnet18.dln
	$(BIN)/dlc run specs/resnet18.dln --bind N=1

# the layering contracts of pyproject.toml first: a leak fails CI before any test runs
test: setup
	$(BIN)/lint-imports
	$(BIN)/dlc fmt --check specs
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest --runslow $(PYTEST_ARGS)

# the committed dlc bench report (docs/benchmarking.md): about an hour on one core
bench: setup
	bash bench/run_bench_report.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
