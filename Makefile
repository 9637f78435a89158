# Two commands do all set-up: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-installed-stamp
PIP_FLAGS := --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test install bench docs clean

# tools/fix_torchvision.py: where torchvision's compiled ops cannot load (a CUDA-linked build next to the CPU torch
# wheel), it adds a small startup fix to the venv so that `import torchvision` works; elsewhere it does nothing.
FIX_TORCHVISION := $(BIN)/python tools/fix_torchvision.py

$(STAMP): pyproject.toml constraints.txt tools/fix_torchvision.py tools/torchvision_cpu_fix.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing p2pvision and its dependencies into $(VENV) (torch/torchvision pinned by constraints.txt)"
	$(BIN)/pip install $(PIP_FLAGS) -e .
	$(FIX_TORCHVISION)
	@echo "building the optional fast-slic superpixels (about a minute; scikit-image SLIC is used without it)"
	@$(BIN)/pip install $(PIP_FLAGS) "cython>=3" wheel setuptools numpy && \
	  $(BIN)/pip install $(PIP_FLAGS) --no-build-isolation "fast-slic==0.4.0" || \
	  echo "note: fast-slic did not build; p2pvision falls back to scikit-image SLIC"
	@touch $(STAMP)

# The test tools (pytest, ruff, mypy, reference libraries, Playwright) come on top, only for `make test`.
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install $(PIP_FLAGS) -e ".[test]"
	$(BIN)/pip install $(PIP_FLAGS) --no-deps "quantus==0.6.0"
	$(FIX_TORCHVISION)
	@touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/p2pvision demo

# The documentation site is built with warnings as errors by tests/test_docs.py (which also checks its reference
# pages and runs its code blocks), so `make test` needs no separate build step.
test: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/lint-imports
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# The documentation site into site/ (warnings are errors); `$(BIN)/mkdocs serve` previews it while you edit docs/.
docs: $(TEST_STAMP)
	HF_HUB_OFFLINE=1 NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_regions.py

clean:
	rm -rf $(VENV) results build site src/*.egg-info .pytest_cache .mypy_cache
