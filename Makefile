# loom: the README's two commands.
#   make test   install missing Debian packages (as root), configure build/, build, run the suite
#   make demo   the same setup, then a loom-perf table and a DP x PP training run on 4 local ranks
#   make bench  the same setup, then loom against Open MPI and Gloo (bench/compare)
#   make check-sanitize  the api, fail, boot, unit and collective suites under ASan+UBSan
#               and under TSan (tests/sanitize.sh; build-asan/, build-tsan/)
#   make check-fuzz      each libFuzzer harness for FUZZ_SECONDS (fuzz/run.sh; build-fuzz/)
# BUILD selects the build directory (default build/).
BUILD ?= build
DEBS := meson ninja-build pkg-config libhwloc-dev libibverbs-dev openmpi-bin libopenmpi-dev libgloo-dev \
        iproute2 gnuplot-nox libopenblas-dev zlib1g-dev dataset-fashion-mnist clang libclang-rt-14-dev nftables

FUZZ_SECONDS ?= 30

.PHONY: all deps build test demo bench clean check-sanitize check-fuzz

all: build

# Install what is missing, only when root and apt-get exist (otherwise say what to install).
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages:$$missing (run as root, or install them)"; fi; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

test: build
	meson test -C $(BUILD) --print-errorlogs --num-processes 2

demo: build
	$(BUILD)/tools/loomrun -n 4 $(BUILD)/bench/loom-perf -o allreduce -b 8 -e 64M -f 4 -n 10 -w 2
	$(BUILD)/tools/loomrun -n 4 $(BUILD)/train/loom-train --dp 2 --pp 2 --micro-batches 4 --schedule 1f1b \
	  --depth 3 --hidden 512 --epochs 5 --trace $(BUILD)/demo-trace.json
	tools/pipeline-timeline $(BUILD)/demo-trace.json -o $(BUILD)/demo-pipeline.svg

# loom vs Open MPI vs Gloo: on this host vs memcpy, and on 4 netns hosts over links shaped
# to 1 and 4 Gbit/s (root) vs the link rate (bench/compare; CSV and PNGs in bench/results/).
# 5 repetitions, not compare's default 3: on this VM a median of 3 is moved by two
# repetitions in a far-vCPU episode (bench/RESULTS.md, 2026-12-02); about 18 minutes.
bench: build
	bench/compare --reps 5 --build $(BUILD)

check-sanitize: deps
	bash tests/sanitize.sh asan
	bash tests/sanitize.sh tsan

check-fuzz: deps
	bash fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
