# edgerec developer entry points.
#
#   make run         build (release) and record the demo clip into ./data
#   make test        install missing test tools, then fmt check, clippy, all tests
#   make test-deps   install missing Debian packages / rustup components (idempotent)
#   make lint        fmt check, the layering check (scripts/check-layers.py) and clippy
#   make fuzz-check  type-check the cargo-fuzz targets in fuzz/ on stable (run them: README)
#   make bench       edgerec vs ffmpeg recording benchmark (writes docs/bench.md)
#   make soak        long runs, not in CI: 1000 power cuts, a week of media in compressed time
#                    (figures into target/soak/; docs/reliability.md quotes them)
#   make clean-data  delete ./data (what `make run` recorded)
#   make build-aarch64 / build-armv7   release binaries for 64/32-bit ARM boards (glibc >= 2.17)
#   make test-aarch64  aarch64 unit tests + an end-to-end recording under qemu-aarch64
#   make deb         .deb packages for arm64 and armhf into target/deb/

CARGO ?= cargo
DEMO_CONFIG ?= assets/demo.toml
DATA_DIR ?= ./data

.PHONY: all build run test test-deps lint fmt bench soak sample clean-data fuzz-check
.PHONY: build-aarch64 build-armv7 test-aarch64 deb test-deb

all: build

build:
	$(CARGO) build

run:
	$(CARGO) build --release
	@echo "edgerec: recording assets/sample.mp4 (looped) into $(DATA_DIR)/demo/YYYY/MM/DD/*.mp4"
	@echo "edgerec: closed segments are uploaded (copied) to ./uploads/edge-demo/demo/YYYY/MM/DD/"
	@echo "edgerec: index at $(DATA_DIR)/index.redb; Ctrl-C stops cleanly"
	./target/release/edgerec run --config $(DEMO_CONFIG)

test-deps:
	scripts/test-deps.sh

test: test-deps
	$(CARGO) fmt --all -- --check
	scripts/check-layers.py
	$(CARGO) clippy --all-targets --features soak -- -D warnings
	$(CARGO) test
	$(CARGO) test --locked --test e2e_power_cut --no-run
	scripts/beside.sh "scripts/deadline.sh 1800 'power-cut test' $(CARGO) test --locked --test e2e_power_cut" -- \
	  $(MAKE) fuzz-check test-aarch64 test-deb

# The power-cut test (tests/e2e_power_cut.rs, about 6 minutes of recording, restarting and
# checking, mostly waiting) is `test = false` in Cargo.toml, so `cargo test` leaves it out:
# it runs here beside the cross builds and qemu runs (compiling), which it does not slow
# much, instead of after them. Both must pass.

# The fuzz crate is not part of the main build; it starts from the main lockfile so it
# checks against the same dependency versions (and reuses the main target dir's artifacts).
fuzz-check:
	cp Cargo.lock fuzz/Cargo.lock
	cd fuzz && $(CARGO) check --bins --target-dir ../target

lint:
	$(CARGO) fmt --all -- --check
	scripts/check-layers.py
	$(CARGO) clippy --all-targets --features soak -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: test-deps
	benches/bench.sh

# The power-cut test with EDGEREC_POWER_CUTS cuts (1000 unless set), then the compressed-time
# soak (EDGEREC_SOAK_MEDIA_HOURS of media per stream, 168 unless set). Each writes its
# figures under target/soak/.
soak: test-deps
	EDGEREC_POWER_CUTS=$${EDGEREC_POWER_CUTS:-1000} EDGEREC_SOAK_REPORT=target/soak/power_cut.txt \
	  $(CARGO) test --locked --test e2e_power_cut power_cuts_at_random_moments -- --nocapture
	$(CARGO) test --locked --features soak --test soak_time -- --nocapture

sample:
	scripts/make-sample.sh

clean-data:
	rm -rf $(DATA_DIR)

# Boards: cross builds with cargo-zigbuild (scripts/cross-deps.sh installs zig from PyPI),
# tests under qemu-user, Debian packages with dpkg-deb. See README.md "Boards and packages".
build-aarch64:
	scripts/cross-build.sh aarch64

build-armv7:
	scripts/cross-build.sh armv7

test-aarch64: build-aarch64
	scripts/cross-test.sh aarch64

deb: build-aarch64 build-armv7
	scripts/deb.sh arm64
	scripts/deb.sh armhf

test-deb: build-aarch64 build-armv7
	scripts/deb-check.sh
