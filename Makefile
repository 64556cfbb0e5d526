# The course's entry points. Everything runs inside .venv, created on first use.
#   make lab      set up and open JupyterLab on the student notebooks
#   make test     set up and run the whole test suite (what CI runs)
#   make check    check your own work: grade every notebook under notebooks/ (NB=path for one)
#   make release  regenerate notebooks/ from solutions/ with nbgrader (FORCE=1 backs up work it overwrites)
#   make grade NB=path/to/notebook.ipynb   autograde one notebook and print the table
#   make bench    run the ratio benchmarks
#   make labs     run the solution notebooks unattended (PROFILE=gpu by default, LABS="lab02_bert ...", MAX_STEPS=N)

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed

# nbgrader shells out to `alembic`, which lives in the venv.
export PATH := $(BIN):$(PATH)

NB ?=

.PHONY: install lab test check release grade bench labs constraints

PROFILE ?= gpu
LABS ?=
MAX_STEPS ?=

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lab: install
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: install
	$(BIN)/python -m pytest

check: install
	for notebook in $(or $(NB),$(wildcard notebooks/*/*.ipynb)); do $(BIN)/python -m course_utils grade "$$notebook" || exit 1; echo; done

release: install
	$(BIN)/python -m course_utils release $(if $(FORCE),--force)

grade: install
	@test -n "$(NB)" || { echo "usage: make grade NB=path/to/notebook.ipynb"; exit 2; }
	$(BIN)/python -m course_utils grade "$(NB)"

bench: install
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

labs: install
	$(BIN)/python -m course_utils run-labs --profile $(PROFILE) --out runs/$(PROFILE) $(if $(LABS),--labs $(LABS)) $(if $(MAX_STEPS),--max-steps $(MAX_STEPS))

constraints: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^course' > constraints.txt.new
	{ head -3 constraints.txt; cat constraints.txt.new; } > constraints.txt.tmp && rm constraints.txt.new && mv constraints.txt.tmp constraints.txt
