# The two set-up commands: `make demo` and `make test` (fresh Debian with Python 3.11).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.emproc-installed
DEMO_DIR ?= demo
PYTEST_ARGS ?=

.PHONY: install demo test lint clean-demo

$(STAMP): pyproject.toml tools/bootstrap.sh
	bash tools/bootstrap.sh "$(PYTHON)" "$(VENV)"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/emproc simulate spa $(DEMO_DIR)/session --movies 6 --demo-3d --write-config $(DEMO_DIR)/config.yaml
	$(BIN)/emproc run --configfile $(DEMO_DIR)/config.yaml --cores 2
	$(BIN)/emproc simulate tomo $(DEMO_DIR)/tomo/session --write-config $(DEMO_DIR)/tomo/config.yaml
	$(BIN)/emproc run --configfile $(DEMO_DIR)/tomo/config.yaml --cores 2
	$(BIN)/emproc status $(DEMO_DIR)/processed
	@echo "emproc demo: SPA outputs in $(DEMO_DIR)/processed, report $(DEMO_DIR)/processed/report/index.html"
	@echo "  SPA 3D (RELION): $(DEMO_DIR)/processed/spa3d.json, InitialModel/ Class3D/ Refine3D/ PostProcess/ BFactor/"
	@echo "  tomography outputs in $(DEMO_DIR)/tomo/processed (tomograms.csv, Tomograms/)"
	@echo "  reproduce with: $(BIN)/emproc run --configfile $(DEMO_DIR)/processed/config_used.yaml"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	bash tools/lint_workflow.sh "$(BIN)"

test: lint
	source tools/mariadb.sh && status=0 && { $(BIN)/pytest -n 2 -m 'not heavy3d' $(PYTEST_ARGS) || status=$$?; } \
		&& bash tools/mariadb.sh stop && exit $$status
