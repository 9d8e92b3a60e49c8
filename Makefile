# Two commands for a fresh machine: `make demo` and `make test`.
# The venv is rebuilt only when pyproject.toml changes (the .stamp file).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

.PHONY: demo test fuzz lint bench sample-data clean
FUZZ_EXAMPLES ?= 5000

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/streamcast fit sample_data/load_single.csv -o demo.streamcast --epochs 3
	$(BIN)/streamcast forecast -m demo.streamcast --horizon 6
	tail -n 5 sample_data/load_single.csv | $(BIN)/streamcast stream -m demo.streamcast --output-format csv

test: $(STAMP)
	$(BIN)/ruff check streamcast tests benchmarks
	$(BIN)/ruff format --check streamcast tests benchmarks
	$(BIN)/pytest

# The long fuzz run: FUZZ_EXAMPLES inputs for each fuzz test (make test runs 40), fresh ones each time.
fuzz: $(STAMP)
	@STREAMCAST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) OMP_NUM_THREADS=1 $(BIN)/pytest tests/test_fuzz.py \
		--hypothesis-show-statistics > .fuzz.log; status=$$?; cat .fuzz.log; \
	awk '/ passing, / {n += $$2; f += $$4} END {print "fuzz: " n " inputs tried, " f " failed"}' .fuzz.log; \
	exit $$status

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

sample-data: $(STAMP)
	$(BIN)/python sample_data/generate.py

clean:
	rm -rf $(VENV) demo.streamcast
