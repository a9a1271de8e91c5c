# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   creates .venv if missing, installs the package, runs the pipeline on the
#               embedded synthetic dataset
#   make test   same set-up, then the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# extras installed with the package; CI adds tflite (EXTRAS=test,tflite) so the TFLite path is tested
EXTRAS ?= test
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/xtinyhar prepare --config configs/synthetic.yaml --out data_cache/synthetic_tokens.npz
	rm -rf runs/demo
	$(BIN)/xtinyhar cv --config configs/synthetic.yaml --tokens data_cache/synthetic_tokens.npz --run runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prepare.py

clean:
	rm -rf $(VENV) data_cache build *.egg-info
