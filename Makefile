# make demo   the whole pipeline on CPU through a local Prefect server and worker (outputs: runs/demo/)
# make test   lint, then the test suite, the end-to-end Prefect test included (and the exports read by the real
#             consumers); make lint alone: ruff check + ruff format --check (`ruff format .` fixes the format)
# make consumers   .venv-consumers: lerobot 0.4.4, robomimic 0.3.0 (tests/test_consumers.py reads, trains with them)
# make clean  remove outputs and caches (make distclean also removes .venv and .venv-consumers)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
CONSUMERS := .venv-consumers
CONSUMERS_STAMP := $(CONSUMERS)/.installed

export HF_HUB_OFFLINE := 1

.PHONY: demo test lint install consumers clean distclean

demo: $(STAMP)
	$(VENV)/bin/python -m flows.local_stack demo

test: lint $(STAMP) $(CONSUMERS_STAMP)
	$(VENV)/bin/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treated as a failure" >&2; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch first, at the pinned version, so the rest resolves against it; re-run only when the pins change.
$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) install -c constraints.txt torch torchvision
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $@

# The consumers' own virtualenv: lerobot 0.4.4 (the last for Python 3.11) pins torch<2.11, torchvision<0.26,
# torchcodec<0.11, av<16, huggingface-hub<0.36, so it cannot share .venv. PyPI has no CPU-only torch for those
# versions: this pulls the default torch 2.10 wheel with its nvidia-* libraries (about 8.4 GB installed, 3-4 min).
# torchcodec (lerobot's default video decoder) loads the system FFmpeg libraries: installed here when absent.
consumers: $(CONSUMERS_STAMP)

$(CONSUMERS_STAMP): tests/consumers/requirements.txt tests/consumers/constraints.txt
	ldconfig -p | grep -q 'libavcodec\.so\.' || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg)
	rm -rf $(CONSUMERS)
	$(PYTHON) -m venv $(CONSUMERS)
	$(CONSUMERS)/bin/pip install -q -c tests/consumers/constraints.txt -r tests/consumers/requirements.txt
	touch $@

clean:
	rm -rf runs .cache .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -not -path './$(CONSUMERS)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(CONSUMERS)
