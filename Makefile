# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates the project-local virtualenv on first use (torch comes from the machine's wheel cache).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgeprune-installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install -q -e '.[dev]'
	# the sensors task reads the data files aeon ships; --no-deps: its pins would downgrade numpy and pandas
	$(VENV)/bin/pip install -q --no-deps 'aeon>=1.6'
	touch $(STAMP)

demo: $(STAMP)  # make demo TASK=sensors: the microcontroller case study
	$(VENV)/bin/edgeprune demo $(if $(TASK),--task $(TASK))

# two workers, one per core; a module's tests stay on one worker (they share module fixtures)
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadscope

clean:
	rm -rf $(VENV) runs .pytest_cache
