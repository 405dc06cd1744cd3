# `make run` and `make test` need only Python 3.11+ and make: both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench fuzz mutation clean system-packages image image-test

$(STAMP): pyproject.toml clients/__init__.py  # the version lives there: a bump reinstalls
	@echo "Setting up $(VENV) with Sable and its dependencies (the first time takes a minute or two)..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# A plain path entry (compat mode) instead of setuptools' import-hook finder, which costs
	# every Python start ~30 ms (SPEC §9: offline CLI commands in 150 ms); plain -e if a later
	# setuptools no longer has it.
	# setuptools warns about compat mode on every install: that warning alone is silenced.
	PYTHONWARNINGS='ignore:Compat editable installs' $(BIN)/python -m pip install --quiet -e '.[dev]' \
	  --config-settings editable_mode=compat || $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Ports: make run AUTHORITY_PORT=9700 DISCHARGER_PORT=9701 when 8700/8701 are taken.
AUTHORITY_PORT ?= 8700
DISCHARGER_PORT ?= 8701

run: $(STAMP)
	$(BIN)/sable dev --authority-port $(AUTHORITY_PORT) --discharger-port $(DISCHARGER_PORT)

# One pytest worker per core (at most 4), each with its own throwaway PostgreSQL cluster.
test: $(STAMP) system-packages
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4

# PostgreSQL for the tests that run on both backends: installed when root with apt-get.
system-packages:
	@sh .ci/system-packages.sh

# The container image with podman (deploy/image.sh: a local Debian base unless BASE is set),
# and a smoke test that starts both services from it (tests/deploy/test_image.py).
IMAGE ?= localhost/sable:dev
image:
	IMAGE=$(IMAGE) sh deploy/image.sh

image-test: $(STAMP) image
	SABLE_TEST_IMAGE=$(IMAGE) $(BIN)/python -m pytest -q tests/deploy/test_image.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint deploy/Dockerfile

# Mutants of the parser, caveats, macaroon construction and verify path, and of the discharger's
# flows, device logins, OpenID and §16 checks, judged by the fast in-process tests listed under
# [tool.mutmut] in pyproject.toml: 3,580 mutants, about an hour on 2 cores (docs/MUTATION.md).
mutation: $(STAMP) system-packages
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 > .mutmut.log 2>&1 || { tail -30 .mutmut.log; exit 1; }
	$(BIN)/mutmut export-cicd-stats > /dev/null
	$(BIN)/python .ci/mutation_score.py

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q tests/fuzz

bench: $(STAMP)
	command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } || true
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) *.egg-info mutants .mutmut.log
