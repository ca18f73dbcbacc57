PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
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
