package bpf

// Txerr counts XDP_TX replies the kernel dropped (txerr.c); its generated
// bindings come from this line, kept apart from gen.go's.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -type txerr_key Txerr txerr.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
