PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch: kept if already installed; on a machine without an NVIDIA driver the CPU build (a few hundred MB instead
# of several GB of CUDA wheels), falling back to the default wheel when that index cannot be reached
$(STAMP): $(BIN)/python pyproject.toml
	@$(BIN)/python -c "import torch" 2>/dev/null || command -v nvidia-smi >/dev/null 2>&1 || \
	  $(BIN)/pip install -q --timeout 20 --retries 1 torch --index-url https://download.pytorch.org/whl/cpu || \
	  echo "the CPU-only torch index is unreachable: installing the default torch wheel"
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sigmarec demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	PY=$(BIN)/python bash benchmarks/all.sh

clean:
	rm -rf $(VENV) runs .cache
