# make demo   the whole pipeline on CPU through a local Prefect server and worker (outputs: runs/demo/)
# make test   the test suite, the end-to-end Prefect test included
# make clean  remove outputs and caches (make distclean also removes .venv)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1

.PHONY: demo test install clean distclean

demo: $(STAMP)
	$(VENV)/bin/python -m flows.local_stack demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treated as a failure" >&2; fi; exit $$rc

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch first, at the pinned version, so the rest resolves against it; re-run only when the pins change.
$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) install -c constraints.txt torch torchvision
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $@

clean:
	rm -rf runs .cache .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
