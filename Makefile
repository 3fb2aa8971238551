# JustWalk Stream: developer and CI entry points.
#   make test       venv + InfluxDB + Chromium, then the whole test suite (starts Tansu and influxd itself)
#   make demo       the end-to-end demo (DURATION=0: until Ctrl-C)
#   make lint       ruff + mypy
#   make bench      the processor's throughput, memory and latency table (several minutes)
# On a fresh Debian machine run as root: missing python3-venv, influxdb and chromium come from apt.

VENV ?= .venv
PY = $(VENV)/bin/python
DURATION ?= 0
PYTHON ?= python3
STAMP = $(VENV)/.justwalk-installed

.PHONY: venv influxdb chromium demo test lint clean distclean bench bench-venv evaluate-gait

venv: $(STAMP)

# Reruns whenever pyproject.toml changes. A venv left half-made by a failed `python3 -m venv`
# (no pip inside) is recreated; python3-venv is installed with apt when we are root.
$(STAMP): pyproject.toml
	@set -e; \
	if ! "$(PY)" -m pip --version >/dev/null 2>&1; then \
	  if [ -f "$(VENV)/pyvenv.cfg" ]; then rm -rf "$(VENV)"; fi; \
	  if ! $(PYTHON) -m venv "$(VENV)"; then \
	    if [ -f "$(VENV)/pyvenv.cfg" ]; then rm -rf "$(VENV)"; fi; \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing python3-venv with apt-get"; \
	      apt-get update; \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv; \
	      $(PYTHON) -m venv "$(VENV)"; \
	    else \
	      echo "'$(PYTHON) -m venv' failed: install python3-venv (sudo apt-get install -y python3-venv)" >&2; \
	      exit 1; \
	    fi; \
	  fi; \
	fi
	$(PY) -m pip install -e ".[dev]"
	@touch $@

influxdb: venv
	$(PY) -c 'from justwalk.localstack import ensure_influxd; ensure_influxd()'

# Headless Chromium prints the progress reports to PDF and is the browser of their tests.
chromium: venv
	$(PY) -c 'from justwalk.report.browser import ensure_chromium; ensure_chromium()'

demo: venv influxdb
	$(VENV)/bin/justwalk demo --duration $(DURATION)

test: venv influxdb chromium lint
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: venv influxdb
	$(PY) -m benchmarks.bench $(BENCH_ARGS)

clean:
	rm -rf build .pytest_cache .ruff_cache .mypy_cache *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# mobgap (Mobilise-D's pipeline) is a benchmark-only dependency: its own venv, never the
# runtime's. `make evaluate-gait` runs our gait algorithms beside it on ../shared/data.
bench-venv: .venv-bench/.installed
.venv-bench/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install mobgap -e .
	@touch $@

evaluate-gait: bench-venv
	.venv-bench/bin/python -m justwalk.evaluation.gait
