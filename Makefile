# xdhcp build, test, demo and benchmark entry points. See README.md.
GO      ?= go
BIN     := bin
PKGS    := ./...
# Packages the tests, the demo, the bench rig and the scripts under .ci/
# use. `make deps` installs them as root and says what is missing otherwise.
# DEB_CMDS are the commands they execute; internal/testenv's deps test
# parses this list and fails when code, tests or scripts execute a command
# that is neither here nor in its short list of base-system commands
# (packages Debian marks Essential, which every install has).
#   iproute2: ip, bridge; iputils-ping: ping (netns tests); util-linux: nsenter;
#   procps: pkill (demo); mawk: awk (demo); llvm-14: llvm-strip-14 (bpf2go);
#   e2fsprogs: mkfs.ext4; util-linux: fsfreeze (a disk that stalls, cmd/xdhcpd).
DEB_PKGS := clang-14 llvm-14 bpftool libbpf-dev gcc-multilib iproute2 iputils-ping ethtool tcpdump \
            isc-dhcp-client udhcpc dhcpcd-base isc-dhcp-server isc-dhcp-relay \
            kea-dhcp4-server kea-admin curl procps mawk util-linux e2fsprogs
DEB_CMDS := ip bridge ss ping ethtool dhclient udhcpc dhcpcd dhcpd dhcrelay omshell kea-dhcp4 perfdhcp curl nsenter pkill awk mkfs.ext4 fsfreeze \
            clang-14 llvm-strip-14

.PHONY: all build test test-short fuzz demo bench bench-quick deps generate check-generated clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# deps installs what the tests, demo and benchmark need (Debian/Ubuntu).
# Without root it only reports what is missing: that is an error under
# CI=true (a CI run must not go on to skip the tests that need them), a
# note otherwise. After installing it checks again, so a package that no
# longer provides a command fails here rather than in a test.
deps:
	@missing=""; for c in $(DEB_CMDS); do command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || missing="$$missing $$c"; done; \
	if [ -z "$$missing" ]; then echo "deps: everything is installed"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "deps: missing$$missing; as root run: apt-get install -y $(DEB_PKGS)"; \
	  if [ "$$CI" = true ]; then echo "deps: CI=true: missing commands are an error"; exit 1; fi; exit 0; \
	fi; \
	echo "deps: installing$$missing"; \
	( apt-get update -qq || true ) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) >/dev/null || { echo "deps: apt-get install failed"; exit 1; }; \
	missing=""; for c in $(DEB_CMDS); do command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then echo "deps: still missing after apt-get install:$$missing"; exit 1; fi; \
	echo "deps: done"

# test runs every test, including the end-to-end ones with real clients
# in network namespaces (as root; they skip with a reason otherwise, and
# fail instead under CI=true), and each fuzz target for a fixed number of
# iterations (.ci/fuzz says why a count and not a duration).
test: deps check-generated
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 20m $(PKGS)
	# The packet socket's senders share its batch buffers without a lock
	# (one at a time by a flag): checked under the race detector too.
	$(GO) test -count=1 -race ./slowpath/pktio/
	$(MAKE) fuzz FUZZTIME=10000x

FUZZTIME ?= 30s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./.ci/fuzz

demo: deps build
	./examples/demo.sh

# bench runs every comparison in one go and writes bench/results/.
bench: deps build
	$(BIN)/xdhcp-bench all --xdhcpd $(BIN)/xdhcpd

bench-quick: deps build
	$(BIN)/xdhcp-bench all --quick --xdhcpd $(BIN)/xdhcpd

generate:
	$(GO) generate ./bpf/...

# check-generated rebuilds every BPF object and its Go bindings and fails
# when they differ from the committed ones. Without clang-14 it is skipped
# on a developer's machine and fails under CI=true, where a skip would let
# a stale object through.
check-generated:
	@if ! command -v clang-14 >/dev/null || ! command -v llvm-strip-14 >/dev/null; then \
	  if [ "$$CI" = true ]; then echo "check-generated: clang-14 or llvm-strip-14 missing; CI=true: failing (make deps installs them)"; exit 1; fi; \
	  echo "check-generated: clang-14 or llvm-strip-14 missing, skipped (make deps installs them)"; exit 0; \
	fi; \
	tmp=$$(mktemp -d); cp bpf/*_bpfel.o bpf/*_bpfel.go $$tmp/; \
	$(GO) generate ./bpf/... || { rm -rf $$tmp; exit 1; }; \
	for f in bpf/*_bpfel.o bpf/*_bpfel.go; do \
	  if ! cmp -s $$f $$tmp/$${f#bpf/}; then echo "check-generated: $$f is stale: run make generate and commit"; rm -rf $$tmp; exit 1; fi; \
	done; echo "check-generated: bpf/*_bpfel.{o,go} match their C sources"; rm -rf $$tmp

clean:
	rm -rf $(BIN)
