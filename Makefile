# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench screenshots

serve: $(VENV)/.installed
	$(BIN)/synthorg-tornado serve

test:
	bash tests/system_packages.sh
	$(MAKE) $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Every page at 1280x800 and 390x844, light and dark, into docs/screenshots/ (not part of `test`).
screenshots: $(VENV)/.installed
	$(BIN)/python -m tests.screenshots

bench: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 'setuptools<81' wheel
	$(BIN)/python -m pip install -q -e '.[test]'
	# The Observatory scanner (tests/test_observatory.py); its own pins cannot be installed today.
	$(BIN)/python -m pip install -q --no-deps 'httpobs==0.9.3'
	touch $@
