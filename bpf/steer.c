//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Sorts the DHCP requests that reach the slow path's UDP port 67 between
 * its two sockets, so that a flood of DHCPDISCOVERs cannot starve the
 * REQUESTs that finish a DORA or renew a lease (issue 19; pktio.Listen):
 *
 *  - the priority socket takes DHCPREQUEST, DHCPDECLINE, DHCPRELEASE and
 *    DHCPLEASEQUERY: messages about a lease that exists or is offered,
 *    from clients or relays that already spoke to the server;
 *  - the bulk socket takes everything else: DHCPDISCOVER and DHCPINFORM,
 *    anything without a message type, and anything this reading does not
 *    understand (the server parses it properly and drops what is bad).
 *
 * The server reads the priority socket first, and the bulk socket's
 * buffer overflows in the kernel, at no cost to the server, when it
 * cannot keep up.
 *
 * Two programs share one classifier:
 *
 *  - steer_reuseport (SO_ATTACH_REUSEPORT_EBPF) picks the socket of the
 *    pair's reuseport group for a unicast datagram: the index it returns
 *    is the socket's place in the group, the order the sockets were bound
 *    in (priority first). The kernel has pulled the UDP header off: the
 *    DHCP message starts at offset 0.
 *  - steer_keep_priority and steer_keep_bulk (SO_ATTACH_BPF, one on each
 *    socket) are for broadcasts, which the kernel copies to every socket
 *    bound to the port, reuseport group or not: each socket keeps only
 *    its own class. A socket filter sees the UDP header: the DHCP message
 *    starts after it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dhcp_proto.h"

/* The sockets' places in the reuseport group (pktio.Listen binds them in
 * this order). */
#define STEER_PRIORITY 0
#define STEER_BULK 1

/* How many options (pads included) are read looking for option 53 before
 * the message is left to the bulk socket. Clients put it first; relays
 * append option 82 after the client's options. */
#define STEER_MAX_OPTIONS 64

/* steer_class reads the DHCP message that starts at base and says which
 * socket it belongs to. */
static __always_inline __u32 steer_class(struct __sk_buff *skb, __u32 base)
{
	__u8 op;
	__u32 cookie;

	if (bpf_skb_load_bytes(skb, base + BOOTP_OP, &op, 1) || op != BOOTREQUEST)
		return STEER_BULK;
	if (bpf_skb_load_bytes(skb, base + DHCP_COOKIE, &cookie, 4) || cookie != bpf_htonl(DHCP_MAGIC))
		return STEER_BULK;

	__u32 off = base + DHCP_OPTIONS;
	for (int i = 0; i < STEER_MAX_OPTIONS; i++) {
		__u8 opt[3];

		if (bpf_skb_load_bytes(skb, off, opt, 1))
			return STEER_BULK;
		if (opt[0] == OPT_PAD) {
			off++;
			continue;
		}
		if (opt[0] == OPT_END || bpf_skb_load_bytes(skb, off, opt, 3))
			return STEER_BULK;
		if (opt[0] != OPT_MSG_TYPE) {
			off += 2 + opt[1];
			continue;
		}
		if (opt[1] != 1)
			return STEER_BULK;
		switch (opt[2]) {
		case DHCPREQUEST:
		case DHCPDECLINE:
		case DHCPRELEASE:
		case DHCPLEASEQUERY:
			return STEER_PRIORITY;
		default:
			return STEER_BULK;
		}
	}
	return STEER_BULK;
}

SEC("socket")
int steer_reuseport(struct __sk_buff *skb)
{
	return steer_class(skb, 0);
}

/* steer_keep returns the datagram's length (keep it all) when it belongs
 * to socket, 0 (drop it) when it is the other socket's copy. */
static __always_inline int steer_keep(struct __sk_buff *skb, __u32 socket)
{
	if (steer_class(skb, UDP_HLEN) != socket)
		return 0;
	return skb->len;
}

SEC("socket")
int steer_keep_priority(struct __sk_buff *skb)
{
	return steer_keep(skb, STEER_PRIORITY);
}

SEC("socket")
int steer_keep_bulk(struct __sk_buff *skb)
{
	return steer_keep(skb, STEER_BULK);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
