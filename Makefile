# Two entry points: `make demo` runs the mini recipe, `make test` runs the tests.
# Both build .venv from the pinned requirements the first time.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spkverif-installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): requirements.txt requirements-test.txt setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-test.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	cd recipes/mini && PATH="$(abspath $(BIN)):$$PATH" ./run.sh

test: $(STAMP)
	$(BIN)/ruff check .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q tests

# The edit-test loop: every test but those marked slow (at least half of them, in about 2 minutes on 2 cores).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(BIN)/python bench/score_bench.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf recipes/mini/data recipes/mini/exp
