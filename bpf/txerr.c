//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Counts XDP_TX replies the kernel failed to transmit on the interfaces
 * xdhcpd serves. The XDP program returns XDP_TX and counts a reply as
 * answered, but the driver may still drop it, and then no client ever sees
 * it. Drivers report that in one of two places:
 *
 *  - xdp:xdp_exception(dev, prog, XDP_TX): generic XDP when the device
 *    refuses the skb (generic_xdp_tx), and native drivers whose XDP_TX
 *    path fails (most of them);
 *  - xdp:xdp_bulk_tx(dev, sent, drops, err): veth, whose native XDP_TX
 *    flushes a bulk queue into the peer (veth_xdp_flush_bq) and drops it
 *    all, with -ENXIO, when the peer has no XDP program.
 *
 * Both are raw tracepoints (no tracefs needed). Interfaces are keyed by
 * network namespace and ifindex, since ifindexes repeat across namespaces;
 * only keys the daemon put in xdhcp_txerr are counted, so the map never
 * grows. The xdp_exception count also requires the program to be the one
 * the daemon runs (its id in xdhcp_txerr_prog).
 *
 * The license must be GPL-compatible: bpf_probe_read_kernel (behind
 * BPF_CORE_READ) is GPL-only. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* Only the fields read here, relocated by CO-RE against the kernel's BTF. */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct net_device {
	int ifindex;
	struct {
		struct net *net;
	} nd_net;
} __attribute__((preserve_access_index));

struct bpf_prog_aux {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_prog {
	struct bpf_prog_aux *aux;
} __attribute__((preserve_access_index));

struct txerr_key {
	__u32 netns;   /* inode of the device's network namespace */
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct txerr_key);
	__type(value, __u64); /* replies dropped; the programs write it */
	__uint(max_entries, 256);
} xdhcp_txerr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32); /* the XDP program's id; the daemon writes it */
	__uint(max_entries, 1);
} xdhcp_txerr_prog SEC(".maps");

static __always_inline void count(const struct net_device *dev, __u64 n)
{
	struct txerr_key k = {
		.netns = BPF_CORE_READ(dev, nd_net.net, ns.inum),
		.ifindex = BPF_CORE_READ(dev, ifindex),
	};
	__u64 *v = bpf_map_lookup_elem(&xdhcp_txerr, &k);
	if (v)
		__sync_fetch_and_add(v, n);
}

SEC("raw_tracepoint/xdp_exception")
int txerr_exception(struct bpf_raw_tracepoint_args *ctx)
{
	const struct net_device *dev = (const void *)ctx->args[0];
	const struct bpf_prog *prog = (const void *)ctx->args[1];
	__u32 act = (__u32)ctx->args[2];
	__u32 zero = 0;

	if (act != XDP_TX)
		return 0;
	__u32 *want = bpf_map_lookup_elem(&xdhcp_txerr_prog, &zero);
	if (!want || BPF_CORE_READ(prog, aux, id) != *want)
		return 0;
	count(dev, 1);
	return 0;
}

SEC("raw_tracepoint/xdp_bulk_tx")
int txerr_bulk(struct bpf_raw_tracepoint_args *ctx)
{
	const struct net_device *dev = (const void *)ctx->args[0];
	int drops = (int)ctx->args[2];

	if (drops > 0)
		count(dev, (__u64)drops);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
