/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Ethernet with zero, one or two VLAN tags (802.1Q, 802.1ad), as the
 * server's program (xdp_dhcp.c) and the rig's tally (inject.c) parse it.
 */
#ifndef XDHCP_ETH_H
#define XDHCP_ETH_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

static __always_inline int is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* parse_eth returns where the L3 header starts (14, 18 or 22) and puts
 * its EtherType in *proto and the tags as received in tag[] (0 where
 * absent); -1 when the frame ends inside the L2 header. Unrolled: the
 * verifier needs each tag's offset as a constant. */
static __always_inline int parse_eth(void *data, void *end, __be16 *proto, __u32 tag[2])
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	*proto = eth->h_proto;
	if (!is_vlan(*proto))
		return sizeof(*eth);
	struct vlan_hdr *v = (void *)(eth + 1);
	if ((void *)(v + 1) > end)
		return -1;
	tag[0] = *(__u32 *)v;
	*proto = v->proto;
	if (!is_vlan(*proto))
		return sizeof(*eth) + sizeof(*v);
	struct vlan_hdr *v2 = v + 1;
	if ((void *)(v2 + 1) > end)
		return -1;
	tag[1] = *(__u32 *)v2;
	*proto = v2->proto;
	return sizeof(*eth) + 2 * sizeof(*v);
}

/* vlan_id is the VLAN ID of a tag as parse_eth returns it. */
static __always_inline __u16 vlan_id(__u32 tag)
{
	return bpf_ntohs((__u16)tag) & 0x0fff;
}

#endif
