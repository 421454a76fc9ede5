# `make run` starts the server with etc/jsongle.env; `make test` runs every test.
# Both create what they need: the virtualenv and the npm packages of the test clients.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= etc/jsongle.env

.PHONY: run test venv node clean

$(VENV)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements.txt
	touch $@

tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

venv: $(VENV)/.installed
node: tests/js/node_modules/.installed

run: venv
	PYTHONPATH=$(CURDIR) $(VENV)/bin/twistd --nodaemon --pidfile= jsongle --config $(CONFIG)

test: venv node
	PYTHONPATH=$(CURDIR) $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) tests/js/node_modules
