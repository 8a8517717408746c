# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates or updates .venv by itself; a second run installs nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-out
# Two shared cores: spinning OpenMP threads make torch many times slower under contention.
export OMP_WAIT_POLICY := PASSIVE
export OMP_NUM_THREADS ?= 2

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package's declared dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: never let pip resolve a plain `torch` (a multi-GB CUDA build).
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Prepare the built-in LFW sample, then pretrain vit-tiny on it for about a minute.
demo: $(STAMP)
	$(BIN)/facerep prepare builtin:lfw-sample $(DEMO_DIR)/lfw-sample --size 64
	$(BIN)/facerep info $(DEMO_DIR)/lfw-sample
	$(BIN)/facerep pretrain $(DEMO_DIR)/lfw-sample --out $(DEMO_DIR)/vit-tiny --model vit-tiny \
		--epochs 40 --batch-size 32 --warmup-epochs 4 --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_DIR)
