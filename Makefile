# ptolemy-rt — one command sets up (make install), one runs the tests (make test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SHARED ?= ../shared
WEIGHTS := $(SHARED)/ptolemy-2022/weights
PUBLISHED_SET := onnx_models/ptolemy-2022

.PHONY: install venv kernels bytecode export-deps models test fuzz bench sweep train train-v1 train-v2 train-quick wheel clean

install: venv kernels bytecode
	@if [ -d "$(WEIGHTS)" ] && [ -f export/convert.py ]; then $(MAKE) --no-print-directory models; \
	 else echo "note: $(WEIGHTS) not found; the published model set is not built (own models only)"; fi
	@$(BIN)/python -m ptolemy_rt.warmup || true
	@echo "ready: $(BIN)/ptolemy (activate with: source $(BIN)/activate)"

venv: $(BIN)/.installed

# The package's bytecode, as pip writes it for a wheel: an editable checkout run with
# PYTHONDONTWRITEBYTECODE set otherwise compiles ≈ 1 MB of source in every process (≈ 0.04 s).
bytecode: venv
	@$(BIN)/python -m compileall -q ptolemy_rt > /dev/null

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,plot,server]'
	touch $@

# Hot loops compiled ahead of time (numba.pycc) into ptolemy_rt/_kernels_aot*.so: runs need
# no numba and compile nothing. Without a C compiler the kernels are jitted (cached) instead.
kernels: $(BIN)/.kernels

# Rebuilt when a kernel module (ptolemy_rt/*_kernels.py), their constants, the export list
# (kernels.py) or the build (aot.py) changes.
KERNEL_SOURCES := $(wildcard ptolemy_rt/*_kernels.py) ptolemy_rt/kernel_constants.py ptolemy_rt/kernels.py ptolemy_rt/aot.py

$(BIN)/.kernels: $(BIN)/.installed $(KERNEL_SOURCES)
	@$(BIN)/python -m ptolemy_rt.aot || echo "note: kernels will be jitted at first use (cached)"
	@touch $@

# PyTorch side (export/, training): development environment only, never a runtime dependency.
export-deps: $(BIN)/.export-deps

$(BIN)/.export-deps: $(BIN)/.installed export/requirements.txt
	$(BIN)/pip install -q -r export/requirements.txt
	touch $@

# Converted published checkpoints -> git-ignored onnx_models/ptolemy-2022/ (+ manifest.json)
models: export-deps
	$(BIN)/python -m export.convert --weights $(WEIGHTS) --notice $(SHARED)/ptolemy-2022/NOTICE.md --out $(PUBLISHED_SET)

test: venv kernels
	$(BIN)/python -m pytest -q

# Property-based fuzzing, nightly style: 10 000 examples per target of tests/test_fuzz.py (the
# readers and every option parser; `make test` runs 200 each, derandomised). About 5 min on
# two idle cores; PTOLEMY_FUZZ_EXAMPLES=N changes the number.
fuzz: venv kernels
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py

bench: venv kernels bytecode
	$(BIN)/python bench/run_bench.py
	$(BIN)/python bench/scale_bench.py
	$(BIN)/python bench/sets_bench.py

# Issue 15 synthetic scale sweep: hole F1 of the default pipeline with both model sets on
# synthetic square images 10-200 nm/px (bench/synthetic_sweep.py; 36 cases, tens of minutes
# on two cores; `SWEEP_ARGS=--quick` runs one case per pixel size).
sweep: venv kernels
	$(BIN)/python bench/synthetic_sweep.py $(SWEEP_ARGS)

# Own model sets from synthetic data (docs/OWN_MODELS.md), seed 0:
# - `make train`: the exact steps that made both committed sets: v1 from scratch (about 1.9 h
#   on one CPU thread), then the default set onnx_models/ptolemy-rt-synth-v2 from it;
# - `make train-v2`: only the last step, on the committed v1 (about 4 min, no torch needed):
#   v1's U-Net and square classifier, its hole classifier's logit fused with three hand
#   features of each crop (ptolemy_rt/hole_features.py), fitted on images nothing else uses;
# - `make train-quick`: the short recipe (first U-Net stage only) into build/quick-set.
train: train-v1 train-v2

train-v2: venv
	$(BIN)/python -m export.train --only hole_fusion --fusion-base onnx_models/ptolemy-rt-synth-v1 --out onnx_models/ptolemy-rt-synth-v2

train-v1: export-deps
	$(BIN)/python -m export.train --only hole_unet --unet-steps 1000
	mkdir -p build && cp build/train-cache/hole_unet.pt build/hole_unet_v2.pt
	$(BIN)/python -m export.train --only hole_unet --unet-steps 800 --unet-target-fraction 0.25 --unet-init build/hole_unet_v2.pt
	cp build/train-cache/hole_unet.pt build/hole_unet_v3.pt
	$(BIN)/python -m export.train --only hole_unet --unet-steps 1500 --unet-images 120 --unet-target-fraction 0.25 --unet-init build/hole_unet_v3.pt --calib-images 40
	cp build/train-cache/hole_unet.pt build/hole_unet_v4.pt
	$(BIN)/python -m export.train --only hole_unet --unet-steps 600 --unet-images 120 --unet-target-fraction 0.25 --unet-init build/hole_unet_v4.pt --calib-images 40 --unet-sigma-max 2 --unet-lr 3e-4
	$(BIN)/python -m export.train --only hole_classifier --hole-images 250 --hole-epochs 20 --hole-schedule cosine
	$(BIN)/python -m export.train --only square_classifier
	$(BIN)/python -m export.train --export-only --out onnx_models/ptolemy-rt-synth-v1

train-quick: export-deps
	$(BIN)/python -m export.train --out build/quick-set

# One wheel for microscope PCs: runtime + default model set + kernels compiled for the AVX2
# baseline (docs/INSTALL.md: offline install on Windows and Linux).
wheel: venv
	$(BIN)/python packaging/build_wheel.py --out dist

clean:
	rm -rf dist $(VENV) $(PUBLISHED_SET) build *.egg-info ptolemy_rt/_kernels_aot*
