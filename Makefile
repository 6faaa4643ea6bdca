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

# Builds only what it runs (the `ucp` executable), not the tests and benchmarks, then walks a
# real DeepSpeed ZeRO-2 checkpoint through every verb in a temporary folder.
DEMO_CK := fixtures/deepspeed/s2_fp32_dp2/checkpoint
demo: deps-build configure
	cmake --build --preset $(PRESET) --target ucp
	@set -e; tmp=$$(mktemp -d -t ucp_demo.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	echo "== ucp inspect: a real DeepSpeed ZeRO-2 checkpoint (dp 2)"; \
	$(UCP) inspect $(DEMO_CK) --max-rows 5; \
	echo "== ucp inspect --verify: every record's CRC-32 and size"; \
	$(UCP) inspect --verify --max-items 4 $(DEMO_CK)/global_step5/mp_rank_00_model_states.pt; \
	echo "== ucp convert: ZeRO -> Universal Checkpoint"; \
	$(UCP) convert $(DEMO_CK) $$tmp/ucp --no-fsync; \
	echo "== ucp verify the UCP"; \
	$(UCP) verify $$tmp/ucp; \
	echo "== ucp reshard: the UCP -> a ZeRO-2 checkpoint at dp 4"; \
	$(UCP) reshard $$tmp/ucp --dp 4 --out $$tmp/dp4 --no-fsync; \
	echo "== ucp diff: the dp 4 checkpoint against the original, state by state"; \
	$(UCP) diff $(DEMO_CK) $$tmp/dp4 --summary; \
	echo "== ucp export: the weights as safetensors"; \
	$(UCP) export $$tmp/dp4 --out $$tmp/weights --no-fsync; \
	ls -l $$tmp/weights

bench: build
	bench/run_format_bench.sh $(BUILD)

clean:
	rm -rf build
