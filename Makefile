# Two entry points, as in the README: `make demo` (main job) and `make test`.
# Both create .venv, install the CPU build of torch from the pin *first*, then the
# project, so pip never re-resolves torch to a multi-GB CUDA build.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
TORCH    = torch==2.13.0
OUT     ?= runs/disks

.PHONY: venv demo demo-full test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# CI (.ci/run -> make test) installs the optional Ray extra too, so the Ray sweep tests run there
venv: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c constraints.txt -e ".[test,ray]"

demo: venv
	$(BIN)/python -m aeprobe run disks --quick --out $(OUT)

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python benchmarks/capture.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/sweep.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
