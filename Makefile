# Two entry points do their own set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch/torchvision pair this project is developed and tested with (the package accepts a range).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: install
	$(PY) -m fbl demo

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks analysis train.py
	$(VENV)/bin/ruff format --check src tests benchmarks analysis train.py

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks analysis train.py
	$(VENV)/bin/ruff format src tests benchmarks analysis train.py

clean:
	rm -rf $(VENV) runs .pytest_cache
