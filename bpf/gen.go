// Package bpf holds the XDP program that answers DHCP renewals and the Go
// bindings bpf2go generates from it: the object file, its maps and
// programs, and Go types for the structs the C code shares with Go. It
// also holds the benchmark rig's reflector (reflector.c), which answers
// every request at once so that the generator can measure itself, and
// its kernel-side renewal injector and reply tally (inject.c).
package bpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -type xdhcp_lease -type xdhcp_grant -type xdhcp_template -type xdhcp_settings -type xdhcp_iface -type xdhcp_event -type xdhcp_counter -type xdhcp_limit -type xdhcp_lease_flag -type xdhcp_cfg_flag -type xdp_md -type xdp_action Xdp xdp_dhcp.c -- -I/usr/include/x86_64-linux-gnu -mcpu=v3 -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel Reflector reflector.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -type inject_frame -type inject_state -type inject_config -type inject_expect -type tally Inject inject.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
