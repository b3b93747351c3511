# imgsim: top-level convenience targets around CMake.
#   make        build build/imgsim (installs missing Debian packages first)
#   make test   build and run every test through CTest
#   make demo   build and run the demo job (generated images, random-weight ResNet-50)
#   make fuzz   build the libFuzzer harnesses (clang, build-fuzz/) and run each for FUZZ_SECONDS
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= image onnx npy tsv
FUZZ_DEPS ?= system

.PHONY: all deps configure build test demo fuzz fuzz-build fuzz-coverage clean format

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

configure: $(BUILD)/CMakeCache.txt

build: deps configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	$(BUILD)/imgsim demo --out=$(BUILD)/demo

# The fuzz build is its own CMake folder (clang, ASan+UBSan+libFuzzer, no CUDA, only the library
# sources and the harnesses of fuzz/); see fuzz/README.md. FUZZ_DEPS=instrumented also builds
# libjpeg-turbo, libspng and libwebp from Debian's sources with the same instrumentation (once
# per build folder, a few minutes) and links them instead of the system's.
fuzz-build:
	@scripts/install-deps.sh --fuzz
ifeq ($(FUZZ_DEPS),instrumented)
	fuzz/build-deps.sh $(FUZZ_BUILD)/deps
	cmake -S . -B $(FUZZ_BUILD) -DIMGSIM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DIMGSIM_FUZZ_DEPS_DIR=$(abspath $(FUZZ_BUILD))/deps
else
	cmake -S . -B $(FUZZ_BUILD) -DIMGSIM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DIMGSIM_FUZZ_DEPS_DIR=
endif
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TARGETS)

# line/branch coverage (llvm-cov) of the corpora the last `make fuzz` left in $(FUZZ_BUILD)
fuzz-coverage:
	JOBS=$(JOBS) fuzz/coverage.sh $(FUZZ_BUILD) $(FUZZ_TARGETS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) $(FUZZ_BUILD)-cov
