# The two commands a newcomer types: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo stack test lint unit install clean bench bench-quick profile mixin docs-image dist
AIRFLOW2 := .venv-airflow2
# pip 25.1 reads pyproject.toml's [dependency-groups] (--group): the tests' and docs' pins.
NEW_PIP := 'pip>=25.1'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

# The exporter (editable) and the test tools. The Airflow callbacks are not installed here:
# tests/test_packaging.py installs their wheel into this venv and into $(AIRFLOW2).
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install $(NEW_PIP)
	$(PIP) install -e . --group test
	touch $@ $(VENV)/.installed $(VENV)/.installed-mixin  # the test group has [mixin]'s pins

install: $(VENV)/.installed

# make demo PORT=9999 LISTEN=0.0.0.0 to serve elsewhere than 127.0.0.1:9180.
PORT ?= 9180
LISTEN ?= 127.0.0.1
demo: $(VENV)/.installed
	$(BIN)/databricks-exporter --simulate --web.listen-address $(LISTEN):$(PORT) --interval 15

# The demo exporter, Prometheus with alerts/databricks.rules.yml, Alertmanager and a Slack stand-in
# that prints what it receives, all on 127.0.0.1 (Debian: apt-get install prometheus
# prometheus-alertmanager); Ctrl-C stops them. make stack STACK_ARGS="--failing --port-base 9180"
stack: $(VENV)/.installed
	$(BIN)/python tools/stack.py $(STACK_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check exporter databricks_simulator airflow_callbacks packaging tests bench mixin docs
	$(BIN)/ruff format --check exporter databricks_simulator airflow_callbacks packaging tests bench mixin docs
	$(BIN)/mypy

# tests/test_airflow_dag.py runs its DAG under this venv's Airflow 3 and under Airflow 2.10 here.
# Airflow 2.10 and its providers only: neither the exporter nor the callbacks (their wheel comes
# from the tests).
$(AIRFLOW2)/.installed: pyproject.toml
	$(PYTHON) -m venv --clear $(AIRFLOW2)
	$(AIRFLOW2)/bin/python -m pip --disable-pip-version-check -q install $(NEW_PIP)
	$(AIRFLOW2)/bin/python -m pip --disable-pip-version-check -q install --group airflow2
	touch $@

unit: $(VENV)/.installed-test $(AIRFLOW2)/.installed
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

# Redraws docs/slack-message.png from the message the callbacks build.
docs-image: $(VENV)/.installed-test
	$(PIP) install --group docs
	$(BIN)/python docs/render_slack_message.py

# The two wheels, into dist/: databricks_jobs_exporter-*.whl (the exporter, what the Dockerfile
# installs) and airflow_provider_databricks_slack_callbacks-*.whl (the Airflow callbacks).
dist: | $(BIN)/python
	rm -rf dist
	$(BIN)/python packaging/build_wheels.py dist

clean:
	rm -rf $(VENV) $(AIRFLOW2) dist .pytest_cache .mypy_cache .ruff_cache

# Figures of README's performance section, written to bench/results.md and .json (about half an hour).
bench: $(VENV)/.installed-test
	$(BIN)/python bench/run.py

profile: $(VENV)/.installed-test
	$(BIN)/python bench/cpu_profile.py

bench-quick: $(VENV)/.installed-test
	$(BIN)/python bench/run.py --quick --out bench/out/results-quick.md
