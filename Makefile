# Two entry points (see README): `make run` and `make test`.
# Both create/reuse .venv/ and install requirements*.txt when one of them changed.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
REQS   := requirements.txt requirements-nodeps.txt
STAMP  := $(VENV)/.installed-$(shell cat $(REQS) | cksum | cut -d' ' -f1)
PORT   ?= 8501

.PHONY: run test demo setup browser clean-venv

setup: $(STAMP)

$(STAMP): $(REQS)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (PoseLab needs Python 3.11)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Start the dashboard on 127.0.0.1 (first start offers to build the embedded demo).
run: setup
	$(PY) -m streamlit run dashboard.py --server.port $(PORT)

# Build the embedded demo from the command line instead (synthetic data + every run).
demo: setup
	$(PY) -m core demo

# Debian's Chromium for the browser test; never `playwright install` (no downloads).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

test: setup browser
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
