# marlvault: `make demo` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-slow lint bench clean lock

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

LOCK := requirements.lock

$(STAMP): pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install -q -c $(LOCK) -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m marlvault.demo

# One worker per core (pytest-xdist; an idle worker takes tests queued for the other), sharing one JAX
# compile cache (tests/conftest.py); longest modules first (tests/durations.json). TEST_WORKERS=0 runs
# in one process.
TEST_WORKERS ?= auto

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check marlvault tests bench

bench: $(STAMP)
	$(PY) bench/ippo_sps.py
	$(PY) bench/vault_io.py

clean:
	rm -rf $(VENV) demo_out

# Re-resolve the newest versions allowed by pyproject.toml in a scratch venv and pin them.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q -e ".[dev]"
	{ head -3 $(LOCK); .venv-lock/bin/python -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock
