//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// reflector is xdhcp-bench's yardstick, not part of the server: it turns
// every BOOTP request arriving on UDP port 67 straight back to its sender
// as a BOOTREPLY for the client's own address (yiaddr = ciaddr), with
// XDP_TX. Nothing answers faster, so what the generator measures against
// it is the generator's own ceiling (`xdhcp-bench selftest`).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int xdhcp_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *bootp = (void *)(udp + 1);

	// Untagged IPv4 without options only: the rig sends nothing else.
	if ((void *)(bootp + 20) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    udp->dest != bpf_htons(67) || bootp[0] != 1)
		return XDP_PASS;

	__u8 mac[ETH_ALEN];
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	// Swapping the addresses leaves the IP header checksum as it was.
	__be32 a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	__be16 p = udp->source;
	udp->source = udp->dest;
	udp->dest = p;
	bootp[0] = 2;                                 // BOOTREPLY
	__builtin_memcpy(bootp + 16, bootp + 12, 4); // yiaddr = ciaddr
	udp->check = 0;                               // optional over IPv4
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
