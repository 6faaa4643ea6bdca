# The two commands of README.md: `make demo` and `make test`. Both install what is missing first.
PRESET ?= release
BUILD := build/$(PRESET)
UCP := $(BUILD)/cli/ucp
PY := /usr/bin/python3

.PHONY: deps configure build test test-asan demo bench clean

deps:
	@scripts/install-deps

$(BUILD)/build.ninja: | deps
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

# Builds only what it runs (the `ucp` executable), not the tests and benchmarks.
demo: deps configure
	cmake --build --preset $(PRESET) --target ucp
	@echo "== ucp inspect: a real DeepSpeed ZeRO-2 optimizer shard"
	$(UCP) inspect fixtures/deepspeed/s2_fp32_dp2/checkpoint/global_step5/zero_pp_rank_0_mp_rank_00_optim_states.pt
	@echo "== ucp inspect --verify: every record's CRC32 and size"
	$(UCP) inspect --verify fixtures/deepspeed/s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt

bench: build
	bench/run_format_bench.sh $(BUILD)

clean:
	rm -rf build
