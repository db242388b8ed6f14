# make demo   set up .venv, build, then train and evaluate HDML on unseen digit-instances identities (CPU, minutes)
# make test   set up .venv, build the extension, run the test suite (the CI gate)
# make bench  the same set-up, then the op and model benchmarks (bench_ops.py, bench_model.py);
#             the other scripts in benchmarks/ each answer one question and run on their own
# make lint   ruff over the package, tests and benchmarks

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

SOURCES := $(shell find csrc -type f) setup.py pyproject.toml

.PHONY: venv build test bench lint clean demo

venv: $(VENV)/.installed

# The venv: torch and torchvision pinned first, then the build requirements of pyproject.toml's
# [build-system] (the build below runs without isolation, against the pinned torch).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q "setuptools>=64" wheel ninja
	touch $@

build: $(VENV)/.built

# The package and its dependencies (pyproject.toml's, with the dev extra: pytest, hypothesis, ruff).
$(VENV)/.built: $(VENV)/.installed $(SOURCES)
	$(PIP) install -q --no-build-isolation -e '.[dev]'
	touch $@

test: build
	$(PY) -m pytest python_tests

demo: build
	$(PY) -m hdml_ext.cli demo --out results/demo

bench: build
	$(PY) benchmarks/bench_ops.py
	$(PY) benchmarks/bench_model.py

lint: build
	$(VENV)/bin/ruff check hdml_ext python_tests benchmarks setup.py

clean:
	rm -rf build dist *.egg-info hdml_ext/_C*.so $(VENV)/.built
