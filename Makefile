# bnnforge: `make demo` runs the main job on the bundled default, `make test` runs the tests.
# The demos start over each time (--force): their run and build directories are replaced.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
DEMO_OUT ?= runs/demo_tfc_bnn
DEMO_EPOCHS ?= 5
RESNET_OUT ?= runs/demo_resnet_bnn
RESNET_EPOCHS ?= 3
RESNET_METHOD ?= bnn
# Markers that need hardware or tools this kind of machine lacks skip themselves with the tool named.
PYTEST_ARGS ?=
# pytest-xdist workers (one per core, at most 4); each test file runs on one worker, so the
# session fixtures a file shares are made once per worker. PYTEST_WORKERS=0 runs in-process.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

BENCH_ARGS ?= --dataset fashion-mnist --nets tfc,cnv --epochs tfc=10,cnv=1

.PHONY: setup demo demo-resnet test test-quick benchmark bench-accel bench-targets bench-explore clean

setup:
	@scripts/setup.sh

demo: setup
	$(PY) -m models.train --net tfc --method bnn --dataset fashion-mnist \
	    --epochs $(DEMO_EPOCHS) --out $(DEMO_OUT) --force
	@$(PY) -m models.summary $(DEMO_OUT)
	$(PY) build_flows/build.py --model $(DEMO_OUT)/model.onnx --board Pynq-Z2 \
	    --folding build_flows/configs/tfc_w1a1.json --verify-samples 100 --out $(DEMO_OUT)/build \
	    --force
	$(PY) $(DEMO_OUT)/build/deploy/validate.py --sim --self-test \
	    --out $(DEMO_OUT)/build/deploy/validate.json

# the residual path: train the resnet briefly (10,000 training images), build it for the
# Pynq-Z2 (FIFOs sized by simulation), stitched rtlsim on 100 test images, deploy on the simulation
demo-resnet: setup
	$(PY) -m models.train --net resnet --method $(RESNET_METHOD) --dataset fashion-mnist \
	    --epochs $(RESNET_EPOCHS) --train-subset 10000 --out $(RESNET_OUT) --force
	@$(PY) -m models.summary $(RESNET_OUT)
	$(PY) build_flows/build.py --model $(RESNET_OUT)/model.onnx --board Pynq-Z2 \
	    --verify-samples 100 --out $(RESNET_OUT)/build --force
	$(PY) $(RESNET_OUT)/build/deploy/validate.py --sim --self-test \
	    --out $(RESNET_OUT)/build/deploy/validate.json

test: setup
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-quick: setup
	$(PY) -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# trains every binarization method on the same budget; writes results/methods_<dataset>.*
benchmark: setup
	$(PY) -m models.benchmark $(BENCH_ARGS)

# builds trained TFC/CNV with the published foldings through rtlsim and Yosys; writes
# results/accel_pynq-z2.* (train them first with `make benchmark`)
ACCEL_ARGS ?= --model tfc=runs/benchmark/fashion-mnist/tfc_bnn_s0/checkpoint.pt \
    --model cnv=runs/benchmark/fashion-mnist/cnv_bnn_s0/checkpoint.pt
bench-accel: setup
	$(PY) -m build_flows.bench $(ACCEL_ARGS)

# the throughput targets: Brevitas' CNV-W1A1 (3x32x32) and LFC-W1A1 (784) folded by our search
# for the highest rate within BNN-PYNQ's Pynq-Z2 budgets (LUT and BRAM36, less the shell
# allowance: CNV 26,072 LUT and 124 BRAM36, LFC 28,360 and 110), built through rtlsim and Yosys;
# writes results/targets_{cnv,lfc}_pynq-z2.*
TARGETS ?= runs/targets
bench-targets: setup
	$(PY) -m models.reference --net cnv_1w1a --out $(TARGETS)/cnv_w1a1.onnx --force
	$(PY) -m models.reference --net lfc_1w1a --out $(TARGETS)/lfc_w1a1.onnx --force
	$(PY) -m build_flows.bench --board Pynq-Z2 --model cnv-w1a1=$(TARGETS)/cnv_w1a1.onnx \
	    --target-fps cnv-w1a1=max --budget lut=0.3961,bram=0.857 --verify-samples 2 \
	    --builds $(TARGETS)/builds --stem targets_cnv_pynq-z2
	$(PY) -m build_flows.bench --board Pynq-Z2 --model lfc-w1a1=$(TARGETS)/lfc_w1a1.onnx \
	    --target-fps lfc-w1a1=max --budget lut=0.4391,bram=0.757 --verify-samples 10 \
	    --builds $(TARGETS)/builds --stem targets_lfc_pynq-z2
	BNNFORGE_YOSYS_TIMEOUT=6000 BNNFORGE_YOSYS_MEM_GB=19 \
	    $(PY) -m build_flows.bench --board ZCU104 --model cnv-w1a1=$(TARGETS)/cnv_w1a1.onnx \
	    --target-fps cnv-w1a1=48000 --verify-samples 4 --builds $(TARGETS)/builds \
	    --stem targets_cnv_zcu104

# design-space plots: each net at a ladder of budgets, the builds as jobs on a local Ray
# (RAY_ADDRESS=host:port for a cluster)
bench-explore: setup
	$(PY) -m models.reference --net cnv_1w1a --out $(TARGETS)/cnv_w1a1.onnx --force
	$(PY) -m models.reference --net lfc_1w1a --out $(TARGETS)/lfc_w1a1.onnx --force
	$(PY) -m build_flows.explore --model $(TARGETS)/lfc_w1a1.onnx --name lfc-w1a1 \
	    --board Pynq-Z2 --points 5 --jobs 2 --verify-samples 4 \
	    $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS))
	$(PY) -m build_flows.explore --model $(TARGETS)/cnv_w1a1.onnx --name cnv-w1a1 \
	    --board Pynq-Z2 --points 4 --jobs 2 --verify-samples 2 --budget lut=0.3961,bram=0.857 \
	    $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS))

clean:
	rm -rf runs builds .pytest_cache
