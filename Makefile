# focusstack: the two commands of the README.
#   make demo   install into .venv (CPU torch wheel first), render a small synthetic stack and
#               fuse it (no ../shared needed); with ../shared also fuse the pcb7 example stack
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
# TAEF2 from ../shared when it is there; else focusstack's own lookup (cache, pinned download)
ifneq ($(wildcard $(SHARED)/weights/taef2/taef2_encoder.pth),)
export FOCUSSTACK_VAE_DIR ?= $(SHARED)/weights/taef2
endif
export FOCUSSTACK_SHARED ?= $(SHARED)
# seconds of loader fuzzing in the test suite (tests/test_fuzz.py)
export FOCUSSTACK_FUZZ_SECONDS ?= 130

.PHONY: install demo test bench completions man wheel clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

# The demo stack: one procedural render-dataset sample (6 frames, 512 px, deterministic per seed;
# about 2 s), fused with the default engine; its all-in-focus ground truth is
# out/demo-stack/samples/000000/gt.png. pcb7 (real photos) only when ../shared is there.
DEMO_STACK := out/demo-stack/samples/000000
demo: install
	mkdir -p out
	$(VENV)/bin/focusstack render-dataset out/demo-stack --samples 1 --resolution 512 --seed 0
	$(VENV)/bin/focusstack fuse $(DEMO_STACK)/frame_*.png -o out/demo.tif --overwrite
	@echo "wrote out/demo.tif (ground truth: $(DEMO_STACK)/gt.png)"
	@if [ -d "$(SHARED)/data/stacks/pcb7" ]; then \
		$(VENV)/bin/focusstack fuse "$(SHARED)/data/stacks/pcb7" -o out/pcb7.tif --overwrite && echo "wrote out/pcb7.tif"; \
	else echo "($(SHARED)/data/stacks/pcb7 is not there: pcb7 skipped)"; fi

test:
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -c "import torch, torchvision" 2>/dev/null || $(PIP) install $(TEST_TORCH_SPEC)
	$(PIP) install -e ".[$(TEST_EXTRAS)]"
	$(VENV)/bin/python -m pytest -q

bench: install
	$(VENV)/bin/python benchmarks/fuse_4k.py

completions: install
	$(VENV)/bin/python -m focusstack.cli.completions completions
	$(VENV)/bin/python -m focusstack.cli.manpage man/focusstack.1

# the man page, from the Typer app (tests/test_docs.py fails when it is stale)
man: install
	$(VENV)/bin/python -m focusstack.cli.manpage man/focusstack.1

# the wheel (models, man page, docs and completions inside), into dist/
wheel: install
	$(VENV)/bin/python -m pip wheel --no-deps --no-build-isolation -w dist .

clean:
	rm -rf $(VENV) out .pytest_cache
