# Two commands on a fresh machine: `make run` (set up and start the dashboard) and `make test` (set up and run
# every test). Both create .venv and install the pinned requirements themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
PIP_FLAGS := --disable-pip-version-check -q

.PHONY: run test test-fast venv venv-test chromium worker bench clean

# Debian's python3 ships without venv/ensurepip until python3-venv is installed: install it when venv fails.
$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q python3-venv && \
	  $(PYTHON) -m venv $(VENV); }

$(VENV)/.run-installed: requirements.txt constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -r requirements.txt -c constraints.txt
	touch $@

$(VENV)/.test-installed: requirements.txt requirements-test.txt constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -r requirements-test.txt -c constraints.txt
	touch $@ $(VENV)/.run-installed

venv: $(VENV)/.run-installed
venv-test: $(VENV)/.test-installed

# Browser tests drive Debian's Chromium (Playwright cannot download its own browser here), with a CJK font so that
# Chinese text renders as characters, not boxes, in the browser tests and their screenshots.
chromium:
	@{ command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q .; } || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium fonts-noto-cjk; }

# Listens on all interfaces only once accounts (or single sign-on) exist; otherwise on 127.0.0.1, and says why.
# Offline unless an administrator allows model downloads (BELLWETHER_ALLOW_DOWNLOADS=1; engine/settings.py).
run: venv
	@ADDRESS=$$($(PY) -m engine users bind-address) && \
	  echo "Bellwether listens on $$ADDRESS, port $(PORT)" && \
	  HF_HUB_OFFLINE=$$(case "$$BELLWETHER_ALLOW_DOWNLOADS" in 1|true|yes|on) echo 0;; *) echo 1;; esac) \
	  $(PY) -m streamlit run server.py --server.port $(PORT) --server.headless true --server.address $$ADDRESS

worker: venv
	$(PY) -m engine worker

test: venv-test chromium
	$(PY) -m pytest

# While you work: skips the real fine-tunes and browsers (slow) and the tests that start engine processes, supervisors
# or servers (process); about a minute on 2 cores. `make test` still runs everything.
test-fast: venv-test
	$(PY) -m pytest -m "not slow and not process"

bench: venv
	$(PY) -m bench train --quick
	$(PY) -m bench score --quick
	$(PY) -m bench monitor --quick

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
