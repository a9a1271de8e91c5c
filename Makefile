# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   creates .venv if missing, installs the package, runs the pipeline on the
#               embedded synthetic dataset
#   make test   same set-up, then the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# extras installed with the package; CI adds tflite and ray (EXTRAS=test,tflite,ray) so the
# TFLite path and the Ray scheduler (tests/evaluate/test_ray.py) are tested
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

# prepare -> 4-fold cv of teacher + student -> export fold 0's student (fp32 + int8) ->
# time both files -> write a recording of subject 9 (no fold saw this wearer) -> predict it
demo: $(STAMP)
	$(BIN)/xtinyhar prepare --config configs/synthetic.yaml --out data_cache/synthetic_tokens.npz
	rm -rf runs/demo
	$(BIN)/xtinyhar cv --config configs/synthetic.yaml --tokens data_cache/synthetic_tokens.npz --out runs/demo --jobs 2
	$(BIN)/xtinyhar export --checkpoint runs/demo/folds/0/student.pt --tokens data_cache/synthetic_tokens.npz --out exports/demo_student.onnx --int8
	$(BIN)/xtinyhar profile --model exports/demo_student.onnx exports/demo_student_int8.onnx --runs 200
	$(BIN)/python -m xtinyhar.data.synthetic --activity wave --subject 9 --out exports/demo_wave_s9.csv
	$(BIN)/xtinyhar predict --model exports/demo_student.onnx --input exports/demo_wave_s9.csv

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prepare.py

clean:
	rm -rf $(VENV) data_cache build *.egg-info
