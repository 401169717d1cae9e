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

.PHONY: run test screenshots lint lint-tree lint-types lint-imports bench clean FORCE

# Folders shipped as edrtrial.<name> (pyproject's package-dir), beside edrtrial/ itself.
MAPPED := connectors playbooks reports

# Strict editable installs expose only the files present at install time, so a new or
# removed source file (tracked in the manifest) triggers a reinstall.
SOURCES := $(shell find edrtrial $(MAPPED) -type f -not -path '*/__pycache__/*' 2>/dev/null | sort)
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

# Debian packages a target needs, installed when missing (apt-get; these machines run as
# root): Pango for WeasyPrint's PDFs (run and test) and HarfBuzz's subsetter (WeasyPrint
# embeds only the glyphs a PDF uses; without it fontTools does, ~0.4 s slower per report
# with the Japanese font), poppler-utils for the tests that read
# a PDF back (pdftotext) and turn a page into a picture (pdftoppm), chromium for the web
# console's browser tests (Playwright drives /usr/bin/chromium; it downloads no browser of
# its own) with a Japanese font for what it shows (fonts-ipafont-gothic).
RUN_DEBS := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0
TEST_DEBS := $(RUN_DEBS) poppler-utils chromium fonts-ipafont-gothic
define debs
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

run: $(STAMP)
	$(call debs,$(RUN_DEBS))
	$(BIN)/edrtrial --config $(CONFIG) db upgrade
	$(BIN)/edrtrial --config $(CONFIG) serve --with-sandbox

test: $(STAMP)
	$(call debs,$(TEST_DEBS))
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

# PNGs of the console's main pages (queue, ticket, company journey, cohort dashboard, ...)
# in build/screenshots, made in Debian's chromium over the sandbox's sample programme.
screenshots: $(STAMP)
	$(call debs,$(TEST_DEBS))
	$(BIN)/python tests/screenshots.py build/screenshots

# Performance figures against the sandbox; BENCH_ARGS="--tenants 10 --alerts 200"
# for a quick run; BENCH_ARGS="--only pdfs --pdfs 100" for the monthly PDF reports alone.
# Prints figures and ratios, never fails on them.
BENCH_ARGS ?=
bench: $(STAMP)
	$(call debs,$(RUN_DEBS))
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The checkers must see the package as Python imports it: edrtrial with connectors/,
# playbooks/ and reports/ inside. Left alone, mypy finds those three only through the
# editable install, takes them for an installed package and hides their errors, and
# import-linter reads ./edrtrial alone. So LINT_TREE/edrtrial is a farm of relative
# symlinks, one per entry of edrtrial/ plus one per mapped folder under its mapped name,
# rebuilt on every run: a new file shows through the directory links at once (no
# reinstall), and nothing depends on where setuptools keeps its editable tree. mypy checks
# it (files and mypy_path in pyproject) and its report is rewritten to the real paths
# (connectors/..., edrtrial/...); lint-imports runs from inside it, because it puts its
# working directory first on sys.path. lint-types and lint-imports take the tools from
# BIN and need no install of their own, so tests/test_lint_gates.py runs them on a
# scratch copy of the sources with a planted error.
LINT_TREE := build/lint
LINT_DIRS := edrtrial $(MAPPED) tests bench

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)
	@$(MAKE) --no-print-directory lint-types lint-imports

lint-tree:
	@rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE)/edrtrial
	@for f in edrtrial/*; do \
	  case $$f in */__pycache__) ;; *) ln -s ../../../$$f $(LINT_TREE)/$$f ;; esac; done
	@for d in $(MAPPED); do ln -s ../../../$$d $(LINT_TREE)/edrtrial/$$d; done

lint-types: lint-tree
	@echo "mypy (strict) on edrtrial $(MAPPED)"
	@$(BIN)/mypy > $(LINT_TREE)/mypy.out; status=$$?; \
	  sed $(foreach d,$(MAPPED),-e 's#^$(LINT_TREE)/edrtrial/$(d)/#$(d)/#') \
	      -e 's#^$(LINT_TREE)/##' $(LINT_TREE)/mypy.out; exit $$status

# IMPORT_CONTRACTS="reports-pure cli-on-top" checks only those contracts (ids in pyproject).
IMPORT_CONTRACTS ?=
lint-imports: lint-tree
	cd $(LINT_TREE) && $(abspath $(BIN))/lint-imports $(CURDIR)/pyproject.toml --no-cache --no-logo \
	  $(foreach c,$(IMPORT_CONTRACTS),--contract $(c))

clean:
	rm -rf $(VENV) build *.egg-info
