# focusstack: the two commands of the README.
#   make demo   install into .venv (CPU torch wheel first) and fuse the pcb7 example stack
#   make test   install into .venv and run the test suite
# Variables: PY (python >= 3.10), VENV, SHARED (folder holding data/ and weights/),
# TORCH_SPEC (the torch requirement installed before the package).
#
# Two torch installs, both taken from local wheels by pip:
#   demo: torch==2.13.0, the small CPU build (no torchvision needed to fuse).
#   test: torch==2.14.1 + torchvision==0.29.1 (a CUDA build that runs on CPU; about 70 s to
#         install here). `eval` uses piq, and piq imports torchvision; PyPI's torchvision only
#         imports beside torch 2.14.1, so the test suite runs on that pair.

PY ?= python3
VENV ?= .venv
SHARED ?= $(abspath ../shared)
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,onnx
TEST_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TEST_EXTRAS ?= dev,onnx,eval
PIP := $(VENV)/bin/python -m pip --disable-pip-version-check -q
export FOCUSSTACK_VAE_DIR ?= $(SHARED)/weights/taef2
export FOCUSSTACK_SHARED ?= $(SHARED)
# seconds of loader fuzzing in the test suite (tests/test_fuzz.py)
export FOCUSSTACK_FUZZ_SECONDS ?= 130

.PHONY: install demo test bench completions clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

demo: install
	mkdir -p out
	$(VENV)/bin/focusstack fuse $(SHARED)/data/stacks/pcb7 -o out/pcb7.tif --overwrite
	@echo "wrote out/pcb7.tif"

test:
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -c "import torch, torchvision" 2>/dev/null || $(PIP) install $(TEST_TORCH_SPEC)
	$(PIP) install -e ".[$(TEST_EXTRAS)]"
	$(VENV)/bin/python -m pytest -q

bench: install
	$(VENV)/bin/python benchmarks/fuse_4k.py

completions: install
	$(VENV)/bin/python -m focusstack.cli.completions completions

clean:
	rm -rf $(VENV) out .pytest_cache
