# Two commands do all set-up: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-installed-stamp
PIP_FLAGS := --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing p2pvision and its dependencies into $(VENV) (torch/torchvision pinned by constraints.txt)"
	$(BIN)/pip install $(PIP_FLAGS) -e .
	@echo "building the optional fast-slic superpixels (about a minute; scikit-image SLIC is used without it)"
	@$(BIN)/pip install $(PIP_FLAGS) "cython>=3" wheel setuptools numpy && \
	  $(BIN)/pip install $(PIP_FLAGS) --no-build-isolation "fast-slic==0.4.0" || \
	  echo "note: fast-slic did not build; p2pvision falls back to scikit-image SLIC"
	@touch $(STAMP)

# The test tools (pytest, ruff, mypy, reference libraries, Playwright) come on top, only for `make test`.
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install $(PIP_FLAGS) -e ".[test]"
	$(BIN)/pip install $(PIP_FLAGS) --no-deps "quantus==0.6.0"
	@touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/p2pvision demo

test: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_regions.py

clean:
	rm -rf $(VENV) results build src/*.egg-info .pytest_cache .mypy_cache
