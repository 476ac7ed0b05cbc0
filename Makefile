# Two commands for a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The demo needs the torch backend (random:tiny runs in PyTorch until engines are exported).
$(VENV)/.demo: pyproject.toml | $(PY)
	$(PIP) -e '.[torch]'
	touch $@

# Tests need everything installable on a CPU machine.
$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(PY) -m flipnet_rt.demo

test: $(VENV)/.dev
	$(PY) -m pytest -q

bench: $(VENV)/.dev
	$(PY) -m pytest -q benchmarks --benchmark-only

clean:
	rm -rf $(VENV) outputs .pytest_cache .benchmarks
