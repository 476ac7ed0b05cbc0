# Two commands for a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo demo-model test serve bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The demo runs the shipped engine (models/demo-onnx) on ONNX Runtime: no torch.
$(VENV)/.demo: pyproject.toml | $(PY)
	$(PIP) -e '.[demo]'
	touch $@

# Tests need everything installable on a CPU machine.
$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.demo

# flipnet-rt serve: PyTriton needs numpy<2, so it gets its own environment (no torch); the
# serving tests (tests/serve) run there.
SERVE_VENV := .venv-serve
SERVE_PY   := $(SERVE_VENV)/bin/python

$(SERVE_PY):
	$(PYTHON) -m venv $(SERVE_VENV)

$(SERVE_VENV)/.serve: pyproject.toml | $(SERVE_PY)
	$(SERVE_PY) -m pip install --quiet --disable-pip-version-check -e '.[serve]' 'pytest>=8'
	touch $@

serve: $(SERVE_VENV)/.serve
	@echo "ready: $(SERVE_VENV)/bin/flipnet-rt serve --model models/demo-onnx"

demo: $(VENV)/.demo
	$(PY) -m flipnet_rt.demo

test: $(VENV)/.dev $(SERVE_VENV)/.serve
	$(PY) -m pytest -q --ignore=tests/serve
	$(SERVE_PY) -m pytest -q tests/serve

# Train the shipped demo model from scratch (LFW under ../shared/data, about 90 minutes on 2 CPU
# cores), then merge, export and evaluate it: train/demo_model.py.
demo-model: $(VENV)/.dev
	$(PY) -m train.demo_model

bench: $(VENV)/.dev
	$(PY) -m pytest -q benchmarks --benchmark-only

clean:
	rm -rf $(VENV) $(SERVE_VENV) outputs .pytest_cache .benchmarks
