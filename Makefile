# Entry points a newcomer can guess: make run, make test, make lint.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# The editable install is a tree of links (setuptools' strict mode: see pyproject.toml), so it is
# made again when a file of the package is added or removed, not when one is edited.
TREE   := $(shell find server schema -name '*.py' -o -name '*.html' 2>/dev/null | LC_ALL=C sort | cksum | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(TREE)

# GraphiQL and graphql-ws for the pages the server serves, from the npm registry (never a CDN).
VENDOR       := server/web/static/vendor
VENDOR_STAMP := $(VENDOR)/.installed
VENDOR_FILES := react/umd/react.production.min.js react-dom/umd/react-dom.production.min.js \
                graphiql/graphiql.min.js graphiql/graphiql.min.css graphql-ws/umd/graphql-ws.min.js \
                @graphiql/plugin-explorer/dist/index.umd.js @graphiql/plugin-explorer/dist/style.css


.PHONY: run test lint typecheck check install assets redis-server chromium nginx screenshots schema clean bench bench-venv

# Creates the virtualenv and installs Switchboard with its test and dev tools. The vendored
# assets come first: they are package data, linked into the editable tree like the code.
$(STAMP): pyproject.toml $(VENDOR_STAMP)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Switchboard into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@rm -f $(VENV)/.installed*
	@$(BIN)/python -m pip install --quiet -e ".[dev,speed,uvicorn]" --config-settings editable_mode=strict
	@touch $@

install: $(STAMP)

$(VENDOR_STAMP): assets/package.json assets/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  echo "npm not found: installing Debian's nodejs and npm packages (GraphiQL's assets come from the npm registry) ..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nodejs npm >/dev/null; \
	}
	@echo "fetching GraphiQL and graphql-ws from the npm registry ..."
	@npm ci --prefix assets --no-audit --no-fund --loglevel=error >/dev/null
	@mkdir -p $(VENDOR)
	@for f in $(VENDOR_FILES); do \
	  name=$$(basename $$f); \
	  case $$f in @graphiql/plugin-explorer/dist/index.umd.js) name=plugin-explorer.umd.js;; \
	              @graphiql/plugin-explorer/dist/style.css) name=plugin-explorer.css;; esac; \
	  cp assets/node_modules/$$f $(VENDOR)/$$name || exit 1; \
	done
	@touch $@

assets: $(VENDOR_STAMP)

# The tests start their own redis-server on a free port; install the binary if this machine lacks it.
redis-server:
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { \
	  echo "redis-server not found: installing Debian's redis-server package ..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server redis-tools >/dev/null; \
	}
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing: install it and retry"; exit 1; }

# The proxy tests put Debian's nginx in front of server processes (tests/support/nginx.py).
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  echo "nginx not found: installing Debian's nginx-light package (for the proxy tests) ..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nginx-light >/dev/null; \
	}

# The browser tests drive Debian's chromium (a tool's own browser download does not work offline).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium not found: installing Debian's chromium package (for the browser tests) ..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	}

# The benchmark's reference servers (Django Channels, redis-py 5.x) live in their own virtualenv.
bench/.venv-ref/.installed: bench/requirements-reference.txt
	@test -x bench/.venv-ref/bin/python || $(PYTHON) -m venv bench/.venv-ref
	@echo "installing the benchmark's reference servers into bench/.venv-ref ..."
	@bench/.venv-ref/bin/python -m pip install --quiet -r bench/requirements-reference.txt
	@touch $@

bench/loadgen/node_modules/.package-lock.json: bench/loadgen/package.json bench/loadgen/package-lock.json
	@npm ci --prefix bench/loadgen --no-audit --no-fund --loglevel=error >/dev/null 2>&1

# Apollo Client and urql, pinned, for the tests of reconnecting stock clients.
client_examples/stock/node_modules/.package-lock.json: client_examples/stock/package.json client_examples/stock/package-lock.json
	@npm ci --prefix client_examples/stock --no-audit --no-fund --loglevel=error >/dev/null 2>&1

bench-venv: bench/.venv-ref/.installed bench/loadgen/node_modules/.package-lock.json bench/peers/node/node_modules/.package-lock.json

# Socket.IO and graphql-ws servers, pinned: the peers a JS team would pick.
bench/peers/node/node_modules/.package-lock.json: bench/peers/node/package.json bench/peers/node/package-lock.json
	@npm ci --prefix bench/peers/node --no-audit --no-fund --loglevel=error >/dev/null 2>&1

# Switchboard against Django Channels (both layers), Socket.IO, Node graphql-ws and a websockets
# floor: bench/results/latest.*
bench: install redis-server bench-venv
	$(BIN)/python bench/run.py

# Refresh docs/graphiql.png and docs/demo.png from the browser tests.
screenshots: install redis-server chromium
	SWITCHBOARD_SCREENSHOTS=docs $(BIN)/python -m pytest tests/test_browser.py

# Serve on the embedded in-memory layer; prints the GraphiQL URL and a development token.
run: install
	$(BIN)/switchboard serve --host $(HOST) --port $(PORT)

# The whole test suite: real redis-server, real server processes, real clients.
test: install redis-server chromium nginx bench/loadgen/node_modules/.package-lock.json client_examples/stock/node_modules/.package-lock.json
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check server schema tests bench
	$(BIN)/ruff format --check server schema tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint test

schema: $(STAMP)
	$(BIN)/switchboard schema > schema.graphql

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache *.egg-info assets/node_modules $(VENDOR)
