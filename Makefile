# A thin layer over scripts/setup and the CMake presets (CMakePresets.json).
.PHONY: all setup build run test fuzz asan release clean

all: build

setup:
	@scripts/setup

build: setup
	@cmake --preset dev >/dev/null
	@cmake --build --preset dev

run: build
	@scripts/run

# The dev suite, then the fuzz preset: each libFuzzer harness for a bounded
# time and the broker protocol fuzzer (fuzz/README.md).
test: build
	@ctest --preset dev -j2
	@$(MAKE) --no-print-directory fuzz

fuzz: setup
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz
	@ctest --preset fuzz -j2

asan: setup
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan
	@ctest --preset asan -j2

release: setup
	@cmake --preset release >/dev/null
	@cmake --build --preset release

clean:
	rm -rf build build-asan build-release build-fuzz
