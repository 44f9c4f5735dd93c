package bpf

// Anchor is the benchmark's unit of XDP cost (anchor.c): it swaps MACs
// and returns XDP_TX. Its generated bindings come from this line, kept
// apart from gen.go's.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel Anchor anchor.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
