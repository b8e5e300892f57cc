# `make demo` runs the nightly retraining job on the embedded local backend;
# `make test` runs the whole suite. Both create .venv themselves from the pinned constraints.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := trainer,airflow,gcs,kubernetes,dev
UI_PORT ?= 8080

.PHONY: venv test lint unit integration mutate demo ui bench clean ui-screenshot

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit

integration: venv
	$(BIN)/pytest -q tests/integration

test: lint
	$(BIN)/pytest -q tests

# Mutation check of the pure core on the unit tests (slow; not part of `make test`). mutmut names
# modules after their paths, so it runs in var/mutate, where `src` is a link to components/.
MUTATE := var/mutate
mutate: venv
	rm -rf $(MUTATE) && mkdir -p $(MUTATE)
	ln -s ../../components $(MUTATE)/src
	for path in components operators dags bench tests pyproject.toml; do \
		ln -s ../../$$path $(MUTATE)/$$path; done
	cd $(MUTATE) && nice -n 10 ../../$(BIN)/mutmut run --max-children $(or $(JOBS),2)
	cd $(MUTATE) && ../../$(BIN)/mutmut results --all true | awk -f ../../tests/mutation_score.awk

demo: venv
	$(BIN)/python dags/demo.py

# The Training view in headless Chromium against a real nightly run; writes the README's
# screenshot. Needs the distribution's browser: apt-get install -y chromium chromium-driver
ui-screenshot: venv
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ echo "needs chromium: apt-get install -y chromium chromium-driver"; exit 1; }
	TFDIST_SCREENSHOT=docs/training-view.png $(BIN)/pytest -q -rs tests/integration/test_training_view_ui.py

# The Airflow UI on this repository's DAGs, with the demo's directories under var/.
# `airflow standalone` starts its scheduler, dag-processor, api-server and triggerer as
# `airflow ...` from PATH, so the venv goes first on it. `tfdist_airflow.ui` runs it so that
# Ctrl-C stops every process it started (role processes included) within seconds.
ui: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" \
	AIRFLOW_HOME="$(CURDIR)/var/airflow" \
	AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__PARALLELISM=8 \
	AIRFLOW__API__HOST=127.0.0.1 \
	AIRFLOW__API__PORT=$(UI_PORT) \
	AIRFLOW__API__BASE_URL=http://127.0.0.1:$(UI_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(UI_PORT)/execution/ \
	TFDIST_BASE_DIR="$(CURDIR)/var/tfdist" \
	TFDIST_RUN_ROOT="$(CURDIR)/var/tfdist/runs" \
	$(BIN)/python -m tfdist_airflow.ui airflow standalone

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var
