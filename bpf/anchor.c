//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// anchor is xdhcp-bench's unit of XDP cost, not part of the server: the
// least a program that answers can do. It swaps the Ethernet source and
// destination and returns XDP_TX, as the XDP paper's forwarding test
// does. `xdhcp-bench cost` times it in the same rounds as the server's
// program and reports the server's cost as a multiple of it, since the
// host's neighbours move absolute nanoseconds by more than half.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdhcp_anchor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	// The verifier's bounds check: a frame is at least its header.
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	// In 16-bit words, as the kernel's XDP samples swap them: the frame
	// starts 2-byte aligned, and byte copies would double the work.
	__u16 *w = data;
	__u16 t0 = w[0], t1 = w[1], t2 = w[2];
	w[0] = w[3];
	w[1] = w[4];
	w[2] = w[5];
	w[3] = t0;
	w[4] = t1;
	w[5] = t2;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
