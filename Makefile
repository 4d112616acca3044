# A thin layer over scripts/setup and the CMake presets (CMakePresets.json).
.PHONY: all setup build run test asan release clean

all: build

setup:
	@scripts/setup

build: setup
	@cmake --preset dev >/dev/null
	@cmake --build --preset dev

run: build
	@scripts/run

test: build
	@ctest --preset dev -j2

asan: setup
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan
	@ctest --preset asan -j2

release: setup
	@cmake --preset release >/dev/null
	@cmake --build --preset release

clean:
	rm -rf build build-asan build-release
