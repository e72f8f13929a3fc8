# The two commands of the README: `make demo` and `make test`. Only python3 and make are needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-slow bench bench-quick clean

# One venv for both commands: the dev extra holds the lab's extras (experiments) and the test tools.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jaxreg compare --dataset digits --out runs/demo

# The suite without the end-to-end process tests (killed subprocesses, a fresh venv): under 8 minutes on 2 cores.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 -m "not slow"

# The end-to-end process tests (marked slow: kill -9, several processes, the examples, a fresh venv); CI runs both.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
