# loom: the README's two commands.
#   make test   install missing Debian packages (as root), configure build/, build, run the suite
#   make demo   the same setup, then a loom-perf table on 4 local ranks
# BUILD selects the build directory (default build/).
BUILD ?= build
DEBS := meson ninja-build pkg-config libhwloc-dev libibverbs-dev openmpi-bin libopenmpi-dev libgloo-dev \
        iproute2 gnuplot-nox

.PHONY: all deps build test demo clean

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

clean:
	rm -rf $(BUILD)
