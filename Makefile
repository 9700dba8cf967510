# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv once and reinstall only
# when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV ?= .venv
# CPU machines take the local CPU wheel; on a CUDA machine override, e.g. `make test TORCH_SPEC='torch==2.14.1'`.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= models,train,serve,scale,onnx,dev
BIN := $(VENV)/bin
STAMP := $(VENV)/.hetmoe-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: install
	$(BIN)/hetmoe demo --out stores/demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) stores/demo
