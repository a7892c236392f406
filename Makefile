# yolov7lib: `make repro` runs the pipeline, `make test` runs the whole test suite.
# Both create .venv and install the kit into it first; nothing but python3.11, pip and make is needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: help install test test-fast lint repro ablations clean-venv

help:
	@echo "make repro      run the DVC pipeline (dvc repro) on the embedded default profile"
	@echo "make ablations  recompute the 40 committed ablation runs one at a time, then dvc repro"
	@echo "make test       run the whole test suite: unit tests and nbval notebook tests"
	@echo "make test-fast  the suite without tests marked slow"
	@echo "make lint       ruff check and ruff format --check"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

repro: $(STAMP)
	$(BIN)/dvc repro

# The ablation stages' results are committed (dvc.yaml); this forces them to run again.
ablations: $(STAMP)
	$(BIN)/dvc repro --force --single-item --glob 'ablation@*'
	$(BIN)/dvc repro

clean-venv:
	rm -rf $(VENV)
