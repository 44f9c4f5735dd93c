package bpf

// Steer sorts the slow path's requests between its two UDP sockets
// (steer.c); its generated bindings come from this line.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -type settings -type client -type steer_count -type steer_limits Steer steer.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
