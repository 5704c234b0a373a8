# The two commands of the README:
#   make run   set up the virtual environment and run the workflow on the embedded default
#   make test  set up the same environment and run the tests
VENV ?= .venv
PYTHON ?= python3
CORES ?= all
BIN := $(abspath $(VENV))/bin
SNAKEMAKE_ARGS ?=

.PHONY: run test venv lint bench clean readme-figures config-readme

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt torch torchvision
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	# the embedded dataset's wheel (version: constraints.txt); its metadata pulls tensorflow, which we never import
	$(BIN)/pip install --quiet --no-deps -c constraints.txt animal-mnist
	touch $@

run: venv
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

# two pytest-xdist workers, one per core of the reference machine (worksteal: an idle worker takes half of the
# other's queue); TEST_WORKERS=0 runs the tests in one process
TEST_WORKERS ?= 2

test: venv lint
	bash tests/setup_system.sh
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q -ra --durations=12 -n $(TEST_WORKERS) --dist worksteal

# Snakemake's linter and snakefmt (settings: pyproject.toml), both part of `make test`
lint: venv
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

bench: venv
	PATH="$(BIN):$$PATH" $(BIN)/python bench/group_sampling.py
	PATH="$(BIN):$$PATH" $(BIN)/python bench/dag_imagenet.py
	PATH="$(BIN):$$PATH" $(BIN)/python bench/gpu_stages.py
	PATH="$(BIN):$$PATH" $(BIN)/python bench/eval_throughput.py
	PATH="$(BIN):$$PATH" $(BIN)/python bench/job_overhead.py

# copy the figures of the embedded default's run into docs/figures/ and fill the numbers of README.md and
# docs/results.md from its result files
readme-figures:
	mkdir -p docs/figures
	cp results/animal_mnist/figures/*.png docs/figures/
	$(BIN)/python docs/make_results.py

# config/README.md from the schema's descriptions (tests/test_config.py checks that they agree)
config-readme:
	$(BIN)/python -c "from d3hr.config import schema_markdown; print(schema_markdown(), end='')" > config/README.md

clean:
	rm -rf results logs benchmarks data .snakemake
