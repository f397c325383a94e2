# Two commands do everything on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= out

.PHONY: demo test bench clean

$(BIN)/gradientflow: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: $(BIN)/gradientflow
	$(BIN)/gradientflow activations
	$(BIN)/gradientflow plot activations --out $(OUT)
	$(BIN)/gradientflow propagate --activation tanh --init normal --std 0.01 --plot $(OUT)
	$(BIN)/gradientflow propagate --activation tanh --init normal --std 1 --plot $(OUT)
	$(BIN)/gradientflow propagate --activation tanh --init xavier --plot $(OUT)
	$(BIN)/gradientflow propagate --activation relu --init xavier --plot $(OUT)
	$(BIN)/gradientflow propagate --activation relu --init he --plot $(OUT)

test: $(BIN)/gradientflow
	$(BIN)/python -m pytest

bench: $(BIN)/gradientflow
	$(BIN)/python benchmarks/activation_cost.py

clean:
	rm -rf $(VENV) $(OUT)
