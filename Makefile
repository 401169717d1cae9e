# Two commands do everything: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= $(if $(wildcard config.toml),config.toml,config.example.toml)
PYTEST_ARGS ?=
# The suite's clock (tests/clock.py): TEST_CLOCK=+365d runs the test run a year ahead,
# TEST_CLOCK=2027-01-04T09:00:00+09:00 from that instant (CI does the first). Only pytest and
# the Python processes it starts see it; the install above never does.
TEST_CLOCK ?=
TEST_ENV = $(if $(TEST_CLOCK),EDRTRIAL_TEST_CLOCK='$(TEST_CLOCK)' PYTHONPATH='$(CURDIR)/tests/clock_site')

.PHONY: run test lint bench clean FORCE

# Strict editable installs expose only the files present at install time, so a new or
# removed source file (tracked in the manifest) triggers a reinstall.
SOURCES := $(shell find edrtrial connectors playbooks reports -type f -not -path '*/__pycache__/*' 2>/dev/null | sort)
MANIFEST := $(VENV)/.manifest

$(MANIFEST): FORCE
	@mkdir -p $(VENV)
	@echo '$(SOURCES)' | cmp -s - $@ || echo '$(SOURCES)' > $@

FORCE:

$(STAMP): pyproject.toml $(MANIFEST)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=strict
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/edrtrial --config $(CONFIG) db upgrade
	$(BIN)/edrtrial --config $(CONFIG) serve --with-sandbox

test: $(STAMP)
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

# Performance figures against the sandbox (issue 3); BENCH_ARGS="--tenants 10 --alerts 200"
# for a quick run. Prints figures and ratios, never fails on them.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check edrtrial connectors playbooks reports tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
