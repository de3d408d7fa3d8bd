# clinrisk: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat Pipfile.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
PIPENV := PIPENV_VENV_IN_PROJECT=1 PIPENV_YES=1 PIPENV_NOSPIN=1 PIPENV_IGNORE_VIRTUALENVS=1 python3 -m pipenv
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): Pipfile.lock pyproject.toml
	@python3 -m pipenv --version >/dev/null 2>&1 || python3 -m pip install --quiet "pipenv==2026.10.3"
	$(PIPENV) sync --dev
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

.PHONY: install
install: $(STAMP) ## Build the environment in .venv from Pipfile.lock (only when it changed)

.PHONY: lock
lock: ## Re-resolve Pipfile into Pipfile.lock
	$(PIPENV) lock


.PHONY: test
test: system-packages install ## Run the whole test suite (installs system packages and the environment first when needed)
	$(PY) -m pytest -n 2 --dist loadgroup -m "not compose" $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: install ## The inner loop: every test not marked slow (a few minutes)
	$(PY) -m pytest -n 2 -m "not slow and not compose" $(PYTEST_ARGS)

TIER ?= code
.PHONY: test-tier
test-tier: install ## Run one tier: make test-tier TIER=code|data|model|integration|e2e|browser
	$(PY) -m pytest -n 2 --dist loadgroup -m "$(TIER) and not compose" $(PYTEST_ARGS)

.PHONY: system-packages
system-packages: ## Install the Debian packages the tests need when missing (postgresql, chromium, chromium-driver, wrk)
	tools/system-packages.sh

.PHONY: lint
lint: install ## Check style with ruff (what pre-commit runs)
	$(VENV)/bin/ruff check src tests benchmarks aws_scripts
	$(VENV)/bin/ruff format --check src tests benchmarks aws_scripts

.PHONY: format
format: install ## Format the code with ruff
	$(VENV)/bin/ruff check --fix src tests benchmarks aws_scripts
	$(VENV)/bin/ruff format src tests benchmarks aws_scripts

.PHONY: train
train: install ## Train the stroke model, register it and apply the promotion gate
	$(VENV)/bin/clinrisk train

.PHONY: predict
predict: install ## Score the raw stroke file with the champion into .clinrisk/predictions.csv
	$(VENV)/bin/clinrisk predict --input data/raw/healthcare-dataset-stroke-data.csv --output .clinrisk/predictions.csv

.PHONY: models
models: install ## List registered versions, aliases and key metrics
	$(VENV)/bin/clinrisk models

.PHONY: clean
clean: ## Remove local state (.clinrisk) but keep the environment
	rm -rf .clinrisk

.PHONY: up
up: install ## Start the whole stack locally (MLflow, Prefect, Evidently UI, worker, web service); Ctrl-C stops it
	$(VENV)/bin/clinrisk up $(UP_ARGS)

FLOW ?= monitor
.PHONY: flow-run
flow-run: install ## Run a flow on the running stack: make flow-run FLOW=retrain (PARAMS="--model diabetes -p key=value")
	$(VENV)/bin/clinrisk flows run $(FLOW) --wait $(PARAMS)

.PHONY: test-compose
test-compose: install ## Build and start the docker compose stack, test it end to end, scale it out (proxy, 2 web, 2 workers), remove it
	.ci/test-compose.sh

.PHONY: audit
audit: install ## Check Pipfile.lock's pinned packages for known vulnerabilities (pip-audit; reports, never fails)
	.ci/audit.sh

.PHONY: bench
bench: system-packages install ## Run every benchmark (11 scripts, wrk installed when missing) and update benchmarks/RESULTS.md
	$(PY) benchmarks/threshold_study.py $(BENCH_ARGS)
	$(PY) benchmarks/model_study.py $(BENCH_ARGS)
	$(PY) benchmarks/serving.py $(BENCH_ARGS)
	$(PY) benchmarks/worker_profile.py $(BENCH_ARGS)
	$(PY) benchmarks/journal.py $(BENCH_ARGS)
	$(PY) benchmarks/login_flood.py $(BENCH_ARGS)
	$(PY) benchmarks/startup.py $(BENCH_ARGS)
	$(PY) benchmarks/batch.py $(BENCH_ARGS)
	$(PY) benchmarks/train_time.py $(BENCH_ARGS)
	$(PY) benchmarks/first_start.py $(BENCH_ARGS)
	$(PY) benchmarks/retrain.py $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: install ## Smoke-run every benchmark (small sizes; results in benchmarks/.work/RESULTS-quick.md)
	$(MAKE) bench BENCH_ARGS=--quick

.PHONY: flows-deploy
flows-deploy: install ## Create the work pool if missing; register prefect.yaml's deployments for every model spec
	$(VENV)/bin/clinrisk flows deploy

.PHONY: flows-worker
flows-worker: install ## Start a Prefect worker on clinrisk-pool (runs retrain, monitor, batch-score)
	$(VENV)/bin/prefect worker start --pool clinrisk-pool --type process

.PHONY: reports-ui
reports-ui: install ## Browse the reports in Evidently's UI without the stack (http://127.0.0.1:8001)
	$(VENV)/bin/evidently ui --port $${CLINRISK_EVIDENTLY_PORT:-8001} --workspace $${CLINRISK_EVIDENTLY_WORKSPACE:-$${CLINRISK_HOME:-.clinrisk}/evidently-workspace}

.PHONY: serve
serve: install ## Serve the champion with gunicorn on http://127.0.0.1:8000 (docs at /docs; add users with clinrisk user add)
	$(VENV)/bin/clinrisk serve $(SERVE_ARGS)

.PHONY: test-web
test-web: install ## Run the web service tests (real gunicorn and MLflow for the slow ones)
	$(PY) -m pytest tests/web -n 2 --dist loadgroup $(PYTEST_ARGS)

.PHONY: test-browser
test-browser: install system-packages ## Browser tests (headless Chromium); SCREENSHOT_DIR=docs refreshes the README's screenshots
	$(PY) -m pytest tests/web/test_web_browser.py -n 0 $(PYTEST_ARGS)

.PHONY: bench-scoring
bench-scoring: install ## Time one scoring call on each path (scikit-learn, ONNX, lean) and one request on the served path, per candidate
	$(PY) benchmarks/scoring_paths.py $(BENCH_ARGS)

.PHONY: bench-proxy
bench-proxy: install ## Failed requests through the scaled stack's proxy under reloads and a killed replica (needs Docker)
	$(PY) benchmarks/proxy_reload.py $(BENCH_ARGS)

AWS_ENV ?= staging
.PHONY: aws-deploy
aws-deploy: install ## Deploy to AWS with boto3: make aws-deploy AWS_ENV=staging|production [AWS_ARGS=--dry-run]
	$(PY) -m aws_scripts.deploy --env $(AWS_ENV) $(AWS_ARGS)

.PHONY: promote-environment
promote-environment: install ## Smoke-test staging, then deploy its image to production: make promote-environment VERSION=N
	$(PY) -m aws_scripts.promote --expect-version $(VERSION) $(AWS_ARGS)
