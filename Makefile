# The two commands a newcomer types: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint unit install clean bench bench-quick profile mixin

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-mixin  # [test] has [mixin]'s pins

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/databricks-exporter --simulate --listen-address 127.0.0.1 --port 9180 --interval 15

lint: $(VENV)/.installed-test
	$(BIN)/ruff check exporter airflow_callbacks tests bench mixin
	$(BIN)/ruff format --check exporter airflow_callbacks tests bench mixin
	$(BIN)/mypy

unit: $(VENV)/.installed-test
	$(BIN)/pytest -q

test: lint unit

$(VENV)/.installed-mixin: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[mixin]'
	touch $@

# Dashboards and alert rules for your selector and thresholds (see mixin/config.yml):
#   make mixin CONFIG=my-config.yml OUT=build/monitoring
# Without CONFIG and OUT it rewrites the repository's copies from mixin/config.yml.
mixin: $(VENV)/.installed-mixin
	$(BIN)/python mixin/generate.py $(if $(CONFIG),--config $(CONFIG)) $(if $(OUT),--out $(OUT))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Figures of README's performance section, written to bench/results.md and .json (about half an hour).
bench: $(VENV)/.installed-test
	$(BIN)/python bench/run.py

profile: $(VENV)/.installed-test
	$(BIN)/python bench/cpu_profile.py

bench-quick: $(VENV)/.installed-test
	$(BIN)/python bench/run.py --quick --out bench/out/results-quick.md
