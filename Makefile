# yolov7lib: `make repro` runs the pipeline, `make test` runs the whole test suite.
# Both create .venv and install the kit into it first; nothing but python3.11, pip and make is needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: help install test test-fast lint repro ablations compare-official clean-venv

help:
	@echo "make repro      run the DVC pipeline (dvc repro) on the embedded default profile"
	@echo "make ablations  recompute the 40 committed ablation runs one at a time, then dvc repro"
	@echo "make test       run the whole test suite: unit tests and nbval notebook tests"
	@echo "make test-fast  the suite without tests marked slow"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make compare-official OFFICIAL=DIR   models, loss, augmentation, training, val, detect and export against a checkout"
	@echo "                of the official code (needs its requirements; after make repro for val, detect and export)"

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

# Checks against the official code (README, Development). OFFICIAL: a checkout of WongKinYiu/yolov7.
compare-official: $(STAMP)
	@test -n "$(OFFICIAL)" || { echo "usage: make compare-official OFFICIAL=/path/to/yolov7"; exit 2; }
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(BIN)/python benchmarks/compare_official_models.py --official $(OFFICIAL)
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(BIN)/python benchmarks/compare_official_loss.py --official $(OFFICIAL) --real-models
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(BIN)/python benchmarks/compare_official_augment.py --official $(OFFICIAL)
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(BIN)/python benchmarks/compare_official_train.py --official $(OFFICIAL)
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(BIN)/python benchmarks/compare_official_val.py --official $(OFFICIAL) \
		--weights runs/train/cpu/weights/best.pt --data data/shapes/data.yaml --img 320
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(BIN)/python benchmarks/compare_official_detect.py --official $(OFFICIAL) \
		--weights runs/train/cpu/weights/best.pt --source data/shapes/images/val --img 320
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(BIN)/python benchmarks/compare_official_export.py --official $(OFFICIAL) \
		--weights runs/train/cpu/weights/best.pt --source data/shapes/images/val --img 320

clean-venv:
	rm -rf $(VENV)
