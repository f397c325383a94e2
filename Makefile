# Two commands do everything on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= out

.PHONY: demo test portability docs dist wheel-check bench clean

$(BIN)/gradientflow: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# the main job: every claim of the seeds (C1-C21) as a live experiment, into $(OUT)/report.html
demo: $(BIN)/gradientflow
	$(BIN)/gradientflow reproduce --quick --out $(OUT)

# the lab's browser tests drive Debian's chromium (CI runs as root, so it can install it)
test: $(BIN)/gradientflow
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(BIN)/python -m pytest

# slow: the stability-edge claims (C7-C9, C20) give the same verdicts on seeds 0 and 1 and on AVX2 kernels
portability: $(BIN)/gradientflow
	$(BIN)/python -m pytest -m portability

# the documentation site into site/, --strict (a broken link or reference fails); its claims page is
# written from the main job's claims.json, so the main job runs first when its output is missing
docs: $(BIN)/gradientflow $(OUT)/claims.json
	GRADIENTFLOW_CLAIMS=$(OUT) NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

$(OUT)/claims.json:
	$(MAKE) demo

# the wheel and the sdist into dist/
dist: $(BIN)/gradientflow
	rm -rf dist
	$(BIN)/python -m build --outdir dist . >/dev/null

# the wheel installed into a fresh environment, no editable install: the smoke test of what a user gets
wheel-check: dist
	bash .ci/wheel_check dist

bench: $(BIN)/gradientflow
	$(BIN)/python benchmarks/activation_cost.py
	$(BIN)/python benchmarks/reproduce.py

clean:
	rm -rf $(VENV) $(OUT) site dist
