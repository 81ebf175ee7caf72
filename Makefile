# edgerec developer entry points.
#
#   make run         build (release) and record the demo clip into ./data
#   make test        install missing test tools, then fmt check, clippy, all tests
#   make test-deps   install missing Debian packages / rustup components (idempotent)
#   make lint        fmt check and clippy only
#   make bench       edgerec vs ffmpeg recording benchmark (writes docs/bench.md)
#   make clean-data  delete ./data (what `make run` recorded)

CARGO ?= cargo
DEMO_CONFIG ?= assets/demo.toml
DATA_DIR ?= ./data

.PHONY: all build run test test-deps lint fmt bench sample clean-data

all: build

build:
	$(CARGO) build

run:
	$(CARGO) build --release
	@echo "edgerec: recording assets/sample.mp4 (looped) into $(DATA_DIR)/demo/YYYY/MM/DD/*.mp4"
	@echo "edgerec: index at $(DATA_DIR)/index.redb; Ctrl-C stops cleanly"
	./target/release/edgerec run --config $(DEMO_CONFIG)

test-deps:
	scripts/test-deps.sh

test: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: test-deps
	benches/bench.sh

sample:
	scripts/make-sample.sh

clean-data:
	rm -rf $(DATA_DIR)
