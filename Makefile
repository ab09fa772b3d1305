# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
# Each target installs missing Debian packages first (scripts/install-deps, apt-get).

JOBS ?= $(shell nproc)
# WERROR=ON: compiler warnings fail the build (what CI does).
WERROR ?= OFF
GONFALON_RUN := build/release/server/gonfalon

.PHONY: run test build build-server deps bench bench-server bench-sdk bench-scale fuzz asan tsan clean

deps:
	@scripts/install-deps

build: deps
	@cmake --preset dev -DGONFALON_WERROR=$(WERROR) >/dev/null
	@cmake --build --preset dev -j $(JOBS)

# The optimized build: what `make run` starts is what one would deploy.
build-server: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target gonfalon

# The server on an embedded RocksDB under ./data, with the demo project on first start.
LISTEN ?= 127.0.0.1:8070
run: build-server
	@mkdir -p data
	@exec $(GONFALON_RUN) serve --demo --data-dir ./data --listen $(LISTEN)

test: build
	@ctest --preset dev -j $(JOBS)

# Release build and the Google Benchmark programs (see docs/performance.md).
bench: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target rules_bench
	@build/release/bench/rules_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

# The server under load: OFREP with wrk next to a trivial Beast server, and the SSE fan-out.
bench-server: deps
	@scripts/install-deps --bench
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target gonfalon trivial_http_server fanout storage_bench
	@bench/ofrep_load.sh 64 10
	@bench/fanout.sh 1000 10 10
	@bench/fanout.sh 10000 5 10

# The SDK through its public Client (evaluation, 1 and 2 threads) and propagation from an
# admin write to an SDK listener against the real server.
bench-sdk: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target gonfalon sdk_bench
	@build/release/bench/sdk_bench --benchmark_filter=Sdk --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
	@build/release/bench/sdk_bench --benchmark_filter=Propagation

# 100, 10,000 and 100,000 flags behind the real server with 1,000 streams and the C++ SDK:
# bulk load, restart, a new stream's put, writes' acknowledgement and propagation, eight
# writers (docs/performance.md, "Scale").
bench-scale: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target gonfalon scale
	@bench/scale.sh 1000

# libFuzzer on the codec (clang). FUZZ_SECONDS=600 make fuzz for a longer run.
FUZZ_SECONDS ?= 60
fuzz: deps
	@scripts/install-deps --fuzz
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS) --target codec_fuzz
	@mkdir -p build/fuzz/corpus
	@build/fuzz/fuzz/codec_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -artifact_prefix=build/fuzz/ build/fuzz/corpus fuzz/corpus

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer.
asan: deps
	@cmake --preset asan -DGONFALON_WERROR=$(WERROR) >/dev/null && cmake --build --preset asan -j $(JOBS) && ctest --preset asan -j $(JOBS)

tsan: deps
	@cmake --preset tsan >/dev/null && cmake --build --preset tsan -j $(JOBS) && ctest --preset tsan -j $(JOBS)

clean:
	rm -rf build
