# The front door: `make help` lists the targets. A newcomer needs two: `make run`, `make test`.

CARGO ?= cargo
NEXTEST_PROFILE ?= default

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run every service in one process (fanfare dev): in memory unless DATABASE_URL / REDIS_URL are set
	$(CARGO) run --bin fanfare -- dev

.PHONY: build
build: ## Build every crate
	$(CARGO) build --workspace --all-targets

.PHONY: test
test: tools services lint deploy-check ## Lint, check deploy/, then run every test against the local Postgres and Redis
	$(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE)
	$(CARGO) test --workspace --doc

.PHONY: lint
lint: ## cargo fmt --check, clippy -D warnings, cargo deny (licences, duplicate versions, sources), unused dependencies, buf lint
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) deny check licenses bans sources
	$(CARGO) machete
	buf lint

.PHONY: audit
audit: ## cargo deny check advisories: needs GitHub (the RustSec database), so not part of lint
	$(CARGO) deny check advisories

.PHONY: deploy-check
deploy-check: tools ## Render deploy/k8s, validate it offline and check its flags and env against the binary
	@scripts/deploy-check.sh

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: bench
bench: services ## Run the benchmarks on Postgres and rewrite docs/benchmarks.md
	$(CARGO) build --release -p fanfare
	$(CARGO) run --release -p fanfare-bench -- --output docs/benchmarks.md

.PHONY: tools
tools: ## Install the test tools if missing (cargo-nextest, cargo-deny, cargo-machete, grpcurl, grpcio, buf, kubernetes-validate, kubectl)
	@scripts/install-tools.sh

.PHONY: services
services: ## Check that PostgreSQL and Redis answer on 127.0.0.1
	@scripts/check-services.sh
