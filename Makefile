# Two commands for a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo demo-model test lint serve fuzz bench mutants native clean gpu-wheels

# The native part (CMakeLists.txt, native/): every install below builds the module
# flipnet_rt._native with pip (scikit-build-core), CPU kernels only unless FLIPNET_CUDA=AUTO|ON
# (`make test FLIPNET_CUDA=AUTO`: CUDA kernels too when nvcc is found, ~1 min more per install).
# A change under native/ reinstalls.
FLIPNET_CUDA ?= OFF
export FLIPNET_CUDA
NATIVE_SRC := CMakeLists.txt $(shell find native -type f 2> /dev/null)

$(PY):
	$(PYTHON) -m venv $(VENV)

# The demo runs the shipped engine (models/demo-onnx) on ONNX Runtime: no torch.
$(VENV)/.demo: pyproject.toml $(NATIVE_SRC) | $(PY)
	$(PIP) -e '.[demo]'
	touch $@

# Tests need everything installable on a CPU machine.
$(VENV)/.dev: pyproject.toml $(NATIVE_SRC) | $(PY)
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.demo

# flipnet-rt serve: PyTriton needs numpy<2, so it gets its own environment (no torch); the
# serving tests (tests/serve) run there.
SERVE_VENV := .venv-serve
SERVE_PY   := $(SERVE_VENV)/bin/python

$(SERVE_PY):
	$(PYTHON) -m venv $(SERVE_VENV)

$(SERVE_VENV)/.serve: pyproject.toml $(NATIVE_SRC) | $(SERVE_PY)
	$(SERVE_PY) -m pip install --quiet --disable-pip-version-check -e '.[serve]' 'pytest>=8'
	touch $@

serve: $(SERVE_VENV)/.serve
	@echo "ready: $(SERVE_VENV)/bin/flipnet-rt serve --model models/demo-onnx"

# The hostile-client fuzz of flipnet-rt serve (tests/serve_fuzz.py; about a minute): every case must
# pass, the exit status counts the failures. make test runs its quick cases (tests/serve/test_hostile.py).
fuzz: $(SERVE_VENV)/.serve
	$(SERVE_PY) tests/serve_fuzz.py --model models/demo-onnx

# The C++ tests of the CPU kernels (ctest), with the cmake and ninja of the dev install.
native: $(VENV)/.dev
	$(VENV)/bin/cmake -S . -B build-tests -G Ninja -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja \
		-DFLIPNET_CUDA=OFF -DFLIPNET_PYTHON=OFF -DFLIPNET_TESTS=ON > /dev/null
	$(VENV)/bin/cmake --build build-tests
	$(VENV)/bin/ctest --test-dir build-tests --output-on-failure

demo: $(VENV)/.demo
	$(PY) -m flipnet_rt.demo

# The linter, the formatter's check and the type checker (pyproject.toml: [tool.ruff], [tool.mypy]);
# `ruff format .` and `ruff check --fix .` make a tree pass the first two.
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(VENV)/.dev $(SERVE_VENV)/.serve native lint
	$(PY) -m pytest -q --ignore=tests/serve
	$(SERVE_PY) -m pytest -q tests/serve

# Train the shipped demo model from scratch (LFW under ../shared/data, about 90 minutes on 2 CPU
# cores), then merge, export and evaluate it: train/demo_model.py.
demo-model: $(VENV)/.dev
	$(PY) -m flipnet_rt.train.demo_model

bench: $(VENV)/.dev
	$(PY) -m pytest -q benchmarks --benchmark-only

# Mutation testing of the core (issue 19; slow, not part of `make test`): tests/mutation_run.py runs
# mutmut on each group of core modules with the fast tests that exercise it, in a copy of the tree
# under build-mutants/<group>/, one child at the lowest priority; then tests/mutation_summary.py
# writes tests/MUTANTS.md from every group's results. MUTANTS="imaging batchio" runs those groups
# only (`$(PY) tests/mutation_run.py --list` lists them); MUTANT_FLAGS=--again re-runs the mutants
# an earlier run left alive, e.g. after adding tests.
mutants: $(VENV)/.dev
	@status=0; $(PY) tests/mutation_run.py $(MUTANT_FLAGS) $(MUTANTS) || status=$$?; \
	$(PY) tests/mutation_summary.py; exit $$status

# The GPU check (benchmarks/gpu_check.sh) on a lent GPU machine: the wheels its image lacks, into the
# gitignored .whl/ that the device tool's run carries (carry: [".whl"]). diffusers and the pure-Python
# packages it needs beyond that image's (importlib_metadata and its lazy-importer and zipp; filelock,
# huggingface-hub, numpy, Pillow, regex, requests and safetensors are there), for its Python 3.12,
# without dependencies; older copies of these are removed (two versions stop the whole install).
GPU_WHEELS := diffusers==0.42.1 importlib_metadata==10.2.0 lazy-importer==0.1.0 zipp==4.1.2
WHL_DIR    ?= .whl
gpu-wheels:
	mkdir -p $(WHL_DIR)
	rm -f $(WHL_DIR)/diffusers-*.whl $(WHL_DIR)/importlib_metadata-*.whl $(WHL_DIR)/lazy_importer-*.whl \
		$(WHL_DIR)/zipp-*.whl
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 -d $(WHL_DIR) $(GPU_WHEELS)
	@ls $(WHL_DIR)

clean:
	rm -rf $(VENV) $(SERVE_VENV) outputs .pytest_cache .benchmarks build-tests .mypy_cache .ruff_cache
