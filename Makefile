# TechX: the two commands a newcomer needs are `make demo` and `make test`.
BIN := .venv/bin

.PHONY: bootstrap demo test check lint typecheck unit integration stack-up stack-down stack-status schemas bench clean lock

bootstrap:
	@bash deploy/local/bootstrap.sh

## Bring the local Kafka + PostgreSQL up and trade for ~20 s, printing deals as they settle.
demo: bootstrap stack-up
	$(BIN)/techx demo --seconds 20

## The whole suite: lint, types, unit and integration tests on the real broker and server.
test: bootstrap check stack-up
	$(BIN)/pytest

check: lint typecheck

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

unit: bootstrap
	$(BIN)/pytest tests/unit

integration: bootstrap stack-up
	$(BIN)/pytest tests/integration

## The local development stack (devstack/, not shipped): `python -m devstack --help`.
stack-up: bootstrap
	$(BIN)/python -m devstack up

stack-down:
	$(BIN)/python -m devstack down

stack-status:
	$(BIN)/python -m devstack status

schemas: bootstrap
	$(BIN)/python -m schemas.generate

## Benchmarks print numbers; they are not part of `make test`. A table, bench/history.jsonl,
## bench/results/<sha>.json and history.png; `make bench BENCH_ARGS=--full` for the long forms.
bench: bootstrap stack-up
	$(BIN)/python -m bench.report $(BENCH_ARGS)

## The image's pinned, hashed locks (deploy/*.lock) from pyproject.toml and
## deploy/build-requirements.in: re-run after changing a dependency (tests/deploy/test_lock.py
## fails until then). Keeps the versions already locked; `make lock LOCK_ARGS=--upgrade` moves
## every pin to the newest release allowed.
LOCK := $(BIN)/python -m uv pip compile --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' $(LOCK_ARGS)
lock: bootstrap
	$(LOCK) pyproject.toml -o deploy/requirements.lock
	$(LOCK) deploy/build-requirements.in -c deploy/requirements.lock -o deploy/build-requirements.lock

clean:
	rm -rf .venv .mypy_cache .ruff_cache .tools
