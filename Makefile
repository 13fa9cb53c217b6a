# edgeharness: `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The model server (`harness serve-model`, docs/server.md) runs in its own venv: kserve pins pandas<3, psutil<6
# and protobuf<7, older than the harness's own environment has.
SERVER_VENV ?= .venv-server
SERVER_STAMP := $(SERVER_VENV)/.installed
# Debian packages the test suite drives for real: the AOSP adb client, a headless browser for the
# report, Android's shell and userland for the virtual device (mksh as /system/bin/sh, toybox), and a
# PostgreSQL server for the team store's tests (started by the tests, as nobody), and qemu-user-static, which
# runs the arm64 virtual device's userland (its sysroot: `make arm64-sysroot`, once, into the cache).
# (The virtual device's sandbox uses util-linux `unshare`/`nsenter`, already in Debian.) iproute2 (`ip`, `tc`):
# the endpoint's netns network method (a namespace, a veth pair, tc tbf; docs/server.md).
SYSTEM_PACKAGES := adb chromium mksh toybox postgresql qemu-user-static iproute2

.PHONY: install system-deps arm64-sysroot demo test lint bench clean

install: $(STAMP) $(SERVER_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,ios,npu,team,server]'
	touch $(STAMP)

$(SERVER_STAMP): pyproject.toml
	$(PYTHON) -m venv $(SERVER_VENV)
	$(SERVER_VENV)/bin/python -m pip install -q --upgrade pip
	$(SERVER_VENV)/bin/python -m pip install -q 'kserve>=0.21' 'ai-edge-litert>=2.0'
	touch $(SERVER_STAMP)

# Installs the missing Debian packages when we may (root, or passwordless sudo); otherwise says what is missing.
system-deps:
	@missing=""; \
	command -v adb >/dev/null 2>&1 || missing="$$missing adb"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v mksh >/dev/null 2>&1 || missing="$$missing mksh"; \
	command -v toybox >/dev/null 2>&1 || missing="$$missing toybox"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v qemu-aarch64-static >/dev/null 2>&1 || missing="$$missing qemu-user-static"; \
	command -v tc >/dev/null 2>&1 || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ]; then echo "warning: missing Debian packages:$$missing (install them as root); tests that need them will skip"; \
	  else echo "installing Debian packages:$$missing"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; fi; \
	fi

# The arm64 virtual device's sysroot (Debian arm64 .debs + aarch64 wheels, ~45 MB once; offline after that).
# Without it (no network on the first build) its tests skip with the reason.
arm64-sysroot: install
	@$(BIN)/harness virtual-device build-arm64 || echo "warning: no arm64 sysroot; the arm64 virtual device's tests will skip"

demo: install
	$(BIN)/harness zoo fetch face_detection_front face_landmark iris_landmark
	$(BIN)/harness run suites/smoke.toml --out reports

lint: install
	$(BIN)/ruff check harness tests benchmarks
	$(BIN)/lint-imports

test: install system-deps arm64-sysroot lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/agreement.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/adb_server_fleet.py
	$(BIN)/python benchmarks/fleet.py
	$(BIN)/python benchmarks/endpoint_overhead.py

clean:
	rm -rf $(VENV) $(SERVER_VENV) .pytest_cache .ruff_cache
