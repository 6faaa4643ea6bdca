# The two commands of README.md: `make demo` and `make test`. Both install what is missing first.
PRESET ?= release
BUILD := build/$(PRESET)
UCP := $(BUILD)/cli/ucp
PY := /usr/bin/python3

.PHONY: deps deps-build configure build test test-asan demo bench clean

deps:
	@scripts/install-deps

# What configuring and building need (no torch, clang or test-only Python packages).
deps-build:
	@scripts/install-deps --build

$(BUILD)/build.ninja: | deps-build
	cmake --preset $(PRESET) >/dev/null

configure: $(BUILD)/build.ninja

build: deps configure
	cmake --build --preset $(PRESET)

test: build
	ctest --preset $(PRESET)

# Sanitizers over the format layer (CI runs this after `make test`).
test-asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan
	ctest --preset asan

# Builds only what it runs (`ucp` and `ucp-train`), not the tests and benchmarks, then the tour:
# train on 4 local ranks, save, convert, reshard, resume twice, export, inspect (scripts/demo-tour.sh).
demo: deps-build configure
	cmake --build --preset $(PRESET) --target ucp ucp-train
	scripts/demo-tour.sh $(BUILD)

# The format benchmarks, then ucp train's (step time vs a plain LibTorch loop, and vs DeepSpeed
# when DS_CASE names a timed harness run; save / load vs the I/O floor; memory per rank; AutoEP vs
# ZeRO-3 experts without EP, grouped GEMM vs per-expert loop, all-to-all bytes).
bench: build
	bench/run_format_bench.sh $(BUILD)
	bench/train_bench.sh $(BUILD)
	bench/train_io_bench.sh $(BUILD)
	bench/moe_bench.sh $(BUILD)

clean:
	rm -rf build
