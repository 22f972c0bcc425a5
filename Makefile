# `make demo` sets up a virtual environment and runs the pipeline on the demo default;
# `make test` sets up the same environment and runs the test suite.
VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test lint

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	dvc repro

test: $(VENV)/.installed
	python -m pytest -q

lint: $(VENV)/.installed
	ruff check .
