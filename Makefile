# `make run` starts the server with etc/jsongle.env; `make test` runs every test;
# `make fuzz` runs the Autobahn test suite's fuzzing client against our WebSocket
# stack. Each creates what it needs: the virtualenv (the server's packages for
# `make run`, the test tools too for `make test`) and the npm packages of the
# test clients; for `make fuzz`, a Python 2.7 virtualenv in .venv-fuzz.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= etc/jsongle.env
FUZZ_VENV ?= .venv-fuzz
# FUZZ_ARGS="--cases 1.*,5.*" runs a subset; see fuzz/run_fuzz.py --help.
FUZZ_ARGS ?=

.PHONY: run test soak venv test-venv node fuzz fuzz-venv clean

$(VENV)/.installed-server: requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-server requirements-test.txt
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-test.txt
	touch $@

tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# wstest runs on Python 2.7 only. virtualenv is bootstrapped into a scratch
# directory (nothing is installed into that interpreter itself); incremental
# goes first because Twisted 16's setup.py needs it at build time.
$(FUZZ_VENV)/.installed: fuzz/py2-constraints.txt
	@python2=$$(fuzz/find-python2) || { echo "make fuzz needs Python 2.7: none found (set PYTHON2=/path/to/python2.7)"; exit 1; }; \
	set -e; rm -rf $(FUZZ_VENV) $(FUZZ_VENV).bootstrap; \
	$$python2 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
		--target $(FUZZ_VENV).bootstrap -c fuzz/py2-constraints.txt virtualenv; \
	PYTHONPATH=$(FUZZ_VENV).bootstrap $$python2 -m virtualenv --quiet $(FUZZ_VENV); \
	rm -rf $(FUZZ_VENV).bootstrap
	$(FUZZ_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c fuzz/py2-constraints.txt incremental
	$(FUZZ_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c fuzz/py2-constraints.txt autobahntestsuite
	touch $@

venv: $(VENV)/.installed-server
test-venv: $(VENV)/.installed-test
node: tests/js/node_modules/.installed

# exec: the process make started becomes the server, so a SIGTERM to it (or to
# make, which passes SIGTERM on to it) stops the server and frees the ports.
run: venv
	exec env PYTHONPATH=$(CURDIR) $(VENV)/bin/twistd --nodaemon --pidfile= jsongle --config $(CONFIG)

test: test-venv node
	PYTHONPATH=$(CURDIR) $(PY) -m pytest $(PYTEST_ARGS)

fuzz-venv: $(FUZZ_VENV)/.installed

fuzz: test-venv fuzz-venv
	PYTHONPATH=$(CURDIR) $(PY) fuzz/run_fuzz.py --wstest $(FUZZ_VENV)/bin/wstest $(FUZZ_ARGS)

# The full soak: 20 000 connect/hello/join/relay/leave/disconnect cycles, 50 clients at once
# (the normal suite runs a short one).
soak: test-venv node
	SOAK_CYCLES=20000 PYTHONPATH=$(CURDIR) $(PY) -m pytest -m soak -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(FUZZ_VENV) tests/js/node_modules
