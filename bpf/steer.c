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
 *    understand (the server parses it properly and drops what is bad),
 *    but for the relayed DHCPDISCOVERs let first as retransmissions
 *    (below), which the priority socket takes.
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
 *    socket) keep each socket to its own class of the broadcasts, which
 *    the kernel copies to every socket bound to the port, reuseport group
 *    or not. A socket filter sees the UDP header: the DHCP message
 *    starts after it. Every datagram a socket takes passes its filter, so
 *    the filters also hold off repeats (steer_repeat): while the server
 *    is behind with a class, a client's DISCOVER (bulk) or REQUEST
 *    (priority) within the class's holdoff of its last one let in is
 *    dropped here, before the socket's buffer. A client that repeats
 *    within the holdoff of its last message, faster than RFC 2131 lets
 *    a client retransmit, has its holdoff doubled each time, as often as
 *    the server allows (struct settings), which it raises while it stays
 *    behind. Under a flood from many MACs each then costs the server one
 *    message per up to sixteen holdoffs, and a new client's DISCOVER, or
 *    a bound client's renewal, finds room.
 *
 * Retransmissions first: a flood from MACs that never repeat slips past
 * the holdoffs, and the bulk socket then overflows with a new client's
 * DISCOVERs among the flood's, its retransmissions too. A client that
 * retransmits says so: RFC 2131 §2's secs counts the time since it began,
 * 0 on its first DISCOVER (udhcpc, dhclient and dhcpcd all count it up; a
 * flood's first tries carry 0). steer_reuseport sends a unicast DISCOVER
 * with secs above 0 (a relay's: nearly all of an ISP's) to the priority
 * socket instead, at most STEER_RETRIES_FIRST a second for all clients,
 * so that a flooder who sets secs too gets no more than that past the
 * bulk socket; one the DISCOVER holdoff would drop spends none of them.
 * It notes each one it lets first (steer_ahead), and the priority
 * socket's filter keeps a DISCOVER only when it finds that note, which it
 * takes. A broadcast DISCOVER stays with the bulk socket: the
 * reuseport program never sees one, and both filters see its copies, so
 * only the program that sees a datagram once can spend the allowance
 * without the two filters disagreeing.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dhcp_proto.h"

#define NSEC_PER_SEC 1000000000ULL

/* The sockets' places in the reuseport group (pktio.Listen binds them in
 * this order). */
#define STEER_PRIORITY 0
#define STEER_BULK 1

/* How many options (pads included) are read looking for option 53 before
 * the message is left to the bulk socket. Clients put it first; relays
 * append option 82 after the client's options. */
#define STEER_MAX_OPTIONS 64

/* How many clients steer_seen and steer_req_seen each remember, the
 * least recent forgotten first: more than a flood's MACs, or they evict
 * each other and get through more often than once a holdoff. While a
 * holdoff is on its map also keeps the clients let off it; with it off
 * they are forgotten (steer_forget). */
#define STEER_CLIENTS (1 << 17)

/* How many notes of retransmissions let first steer_ahead keeps, and for
 * how long one counts: the priority socket's filter reads a datagram's
 * note microseconds after steer_reuseport wrote it; one never taken (a
 * datagram dropped in between) lapses. */
#define STEER_AHEAD_NOTES 1024
#define STEER_AHEAD_NS (100 * 1000 * 1000ULL)

/* How often a client's holdoff doubles at most (struct settings'
 * doublings are capped at it): 2^4, so a 2 s holdoff grows to 32 s. A
 * client retransmits after 4 s at the earliest, less a second of
 * randomness (RFC 2131 §4.1), so one that repeats within a holdoff (2 s
 * by default) is no client following it; at a single holdoff, a flood of
 * 65,536 MACs let 32,768 DISCOVERs a second into a socket the server
 * read 14,000 a second from, and the kernel dropped new clients'
 * DISCOVERs with the flood's (xdhcp-bench flood). A client quiet for a
 * holdoff has the holdoff alone again. */
enum steer_limits {
	STEER_MAX_DOUBLINGS = 4,
	/* How many retransmitted unicast DISCOVERs a second go to the
	 * priority socket (steer_retry_first): a few hundred clients'
	 * retries, a sliver of the REQUESTs the server reads there a
	 * second (tens of thousands), so that a flooder setting secs
	 * cannot bury the renewals with them. */
	STEER_RETRIES_FIRST = 256,
};

/* Referenced so that bpf2go -type finds it in BTF. */
const enum steer_limits *unused_limits __attribute__((unused));

/* What the server sets (pktio.Conn.SetHoldoffs). */
struct settings {
	/* While non-zero, a DHCPDISCOVER from a client whose last one was
	 * let into the bulk socket less than this ago is dropped: the
	 * server sets it while it is behind with DISCOVERs. */
	__u64 holdoff_ns;
	/* The same for a DHCPREQUEST and the priority socket, set while
	 * the server is behind with REQUESTs: a flood of REQUESTs from
	 * many MACs must not bury the renewals of bound clients. */
	__u64 request_holdoff_ns;
	/* How often each holdoff may double for a client's repeats (at
	 * most STEER_MAX_DOUBLINGS): the server raises it while it stays
	 * behind with the class and lowers it while it keeps up, so that
	 * clients that retry early are held off no longer than it takes. */
	__u32 doublings;
	__u32 request_doublings;
};

/* steer_counts' slots: what each holdoff dropped, and the retransmitted
 * DISCOVERs steer_retry_first sent to the priority socket or, over its
 * allowance, left to the bulk socket. */
enum steer_count {
	STEER_HELD_DISCOVER,
	STEER_HELD_REQUEST,
	STEER_RETRIES_AHEAD,
	STEER_RETRIES_OVER,
	STEER_COUNTS,
};

/* A client as the kernel can tell it cheaply: chaddr, its hlen bytes
 * (the rest zeroed). A client with hlen 0 (RFC 4390's IPoIB, told apart
 * by option 61 alone) or above 16 is never held off: all of them would
 * be one client here. */
struct client {
	__u8 chaddr[16];
};

/* What a holdoff remembers of a client: when its last message of the
 * class was let in (0: let off), and when it was last let off the holdoff
 * because it moved on (steer_forget; 0: never): at most once its own
 * holdoff, so that a flood alternating DISCOVERs and REQUESTs from each
 * MAC gets two of each per its own holdoff, not all of them; when its last message of the
 * class came, let in or held; and how often its holdoff has doubled for
 * repeats (STEER_MAX_DOUBLINGS). */
struct seen {
	__u64 at;
	__u64 pass_at;
	__u64 last;
	__u32 doublings;
	__u32 unused;
};

/* A retransmitted DISCOVER steer_reuseport let first, as steer_ahead
 * knows it: its client, xid, secs and relay (giaddr: the same DISCOVER
 * forwarded by two relays is two datagrams, and a broadcast one's giaddr
 * is 0). */
struct ahead {
	struct client c;
	__u32 xid;
	__u32 giaddr;
	__u32 secs;
};

/* The retransmissions' allowance (steer_retry_first): the second that
 * began at start, and how many it let first. CPUs update it without a
 * lock: a second begun twice at once, or a few let over the allowance in
 * a race, cost a few DISCOVERs more in the priority socket. */
struct retry_window {
	__u64 start;
	__u32 used;
	__u32 unused;
};

/* The maps, all of them:
 *  - steer_settings: the one struct settings;
 *  - steer_seen: each client's last DISCOVER let in (bpf_ktime_get_ns),
 *    let off when it moves on to a REQUEST (steer_forget);
 *  - steer_req_seen: each client's last REQUEST let in, let off when a
 *    DISCOVER of its is let in (a client NAKed starts again at once, and
 *    its next REQUEST is not a repeat);
 *  - steer_retries: the one struct retry_window;
 *  - steer_ahead: the retransmitted DISCOVERs steer_reuseport let first
 *    (bpf_ktime_get_ns), until the priority socket's filter takes each;
 *  - steer_counts: DISCOVERs and REQUESTs dropped by the holdoffs, and
 *    retransmitted DISCOVERs let first or not, per CPU (enum
 *    steer_count). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} steer_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STEER_CLIENTS);
	__type(key, struct client);
	__type(value, struct seen);
} steer_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STEER_CLIENTS);
	__type(key, struct client);
	__type(value, struct seen);
} steer_req_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct retry_window);
} steer_retries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STEER_AHEAD_NOTES);
	__type(key, struct ahead);
	__type(value, __u64);
} steer_ahead SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_COUNTS);
	__type(key, __u32);
	__type(value, __u64);
} steer_counts SEC(".maps");

/* Referenced so that bpf2go -type finds it in BTF. */
const enum steer_count *unused_count __attribute__((unused));

/* steer_counted counts one in steer_counts' slot. */
static __always_inline void steer_counted(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&steer_counts, &slot);

	if (n)
		(*n)++;
}

/* steer_type reads the message type (option 53) of the DHCP request that
 * starts at base, 0 when it has none this reading finds. */
static __always_inline __u8 steer_type(struct __sk_buff *skb, __u32 base)
{
	__u8 op;
	__u32 cookie;

	if (bpf_skb_load_bytes(skb, base + BOOTP_OP, &op, 1) || op != BOOTREQUEST)
		return 0;
	if (bpf_skb_load_bytes(skb, base + DHCP_COOKIE, &cookie, 4) || cookie != bpf_htonl(DHCP_MAGIC))
		return 0;

	__u32 off = base + DHCP_OPTIONS;
	for (int i = 0; i < STEER_MAX_OPTIONS; i++) {
		__u8 opt[3];

		if (bpf_skb_load_bytes(skb, off, opt, 1))
			return 0;
		if (opt[0] == OPT_PAD) {
			off++;
			continue;
		}
		if (opt[0] == OPT_END || bpf_skb_load_bytes(skb, off, opt, 3))
			return 0;
		if (opt[0] != OPT_MSG_TYPE) {
			off += 2 + opt[1];
			continue;
		}
		return opt[1] == 1 ? opt[2] : 0;
	}
	return 0;
}

/* steer_class is the socket a message type belongs to. */
static __always_inline __u32 steer_class(__u8 type)
{
	switch (type) {
	case DHCPREQUEST:
	case DHCPDECLINE:
	case DHCPRELEASE:
	case DHCPLEASEQUERY:
		return STEER_PRIORITY;
	default:
		return STEER_BULK;
	}
}

/* steer_client reads the client of the DHCP message at base into c; 0
 * when it has none the holdoffs can tell (struct client). */
static __always_inline int steer_client(struct __sk_buff *skb, __u32 base, struct client *c)
{
	__u8 hlen;

	if (bpf_skb_load_bytes(skb, base + BOOTP_HLEN, &hlen, 1) || hlen == 0 || hlen > sizeof(c->chaddr) ||
	    bpf_skb_load_bytes(skb, base + BOOTP_CHADDR, c->chaddr, sizeof(c->chaddr)))
		return 0;
	for (__u32 i = 0; i < sizeof(c->chaddr); i++)
		if (i >= hlen)
			c->chaddr[i] = 0;
	return 1;
}

/* steer_own is a client's holdoff: holdoff doubled for its repeats, as
 * often as the server allows. */
static __always_inline __u64 steer_own(struct seen *e, __u64 holdoff, __u32 allowed)
{
	__u32 d = e->doublings;

	if (d > allowed)
		d = allowed;
	if (d > STEER_MAX_DOUBLINGS)
		d = STEER_MAX_DOUBLINGS;
	return holdoff << d;
}

/* steer_repeat says whether the message at base comes from a client let
 * in (into seen) less than its holdoff ago (steer_own), counting it in
 * steer_counts' slot held when so, and otherwise notes the client let in
 * now. The client's repeats are counted: each message of the class it
 * sends within holdoff of the one before (let in or held), up to
 * STEER_MAX_DOUBLINGS; a message a holdoff or more after the one before
 * starts them again at 0. */
static __always_inline int steer_repeat(struct __sk_buff *skb, __u32 base, void *seen, __u64 holdoff, __u32 allowed,
					__u32 held)
{
	struct client c;

	if (!steer_client(skb, base, &c))
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct seen *e = bpf_map_lookup_elem(seen, &c);
	if (e) {
		if (holdoff && now - e->last < holdoff) {
			if (e->doublings < STEER_MAX_DOUBLINGS)
				e->doublings++;
		} else {
			e->doublings = 0;
		}
		e->last = now;
		/* at 0: let off (steer_forget). */
		if (e->at && holdoff && now - e->at < steer_own(e, holdoff, allowed)) {
			steer_counted(held);
			return 1;
		}
		/* Noted while the holdoff is off too: when a flood starts,
		 * its clients are known by the time the server falls
		 * behind. */
		e->at = now;
		return 0;
	}
	struct seen fresh = {.at = now, .last = now};
	bpf_map_update_elem(seen, &c, &fresh, BPF_ANY);
	return 0;
}

/* steer_settings_get is the server's settings. An array's slot 0 is
 * always there, but the verifier wants NULL checked: without them
 * nothing is held off. */
static __always_inline struct settings *steer_settings_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&steer_settings, &zero);
}

/* steer_secs is the secs field of the DHCP message at base (RFC 2131
 * §2: seconds since its client began), 0 when it cannot be read. */
static __always_inline __u16 steer_secs(struct __sk_buff *skb, __u32 base)
{
	__u16 secs;

	if (bpf_skb_load_bytes(skb, base + BOOTP_SECS, &secs, sizeof(secs)))
		return 0;
	return bpf_ntohs(secs);
}

/* steer_ahead_key reads the DHCPDISCOVER at base into k, 0 when it is no
 * retransmission (secs 0) or has no client the holdoffs can tell. */
static __always_inline int steer_ahead_key(struct __sk_buff *skb, __u32 base, struct ahead *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->secs = steer_secs(skb, base);
	return k->secs && steer_client(skb, base, &k->c) && !bpf_skb_load_bytes(skb, base + BOOTP_XID, &k->xid, 4) &&
	       !bpf_skb_load_bytes(skb, base + BOOTP_GIADDR, &k->giaddr, 4);
}

/* steer_held_now says whether the DISCOVER holdoff would drop a DISCOVER
 * of client c now (steer_repeat, without its bookkeeping, which the
 * socket's filter does). */
static __always_inline int steer_held_now(struct client *c)
{
	struct settings *cfg = steer_settings_get();

	if (!cfg || !cfg->holdoff_ns)
		return 0;
	struct seen *e = bpf_map_lookup_elem(&steer_seen, c);
	return e && e->at && bpf_ktime_get_ns() - e->at < steer_own(e, cfg->holdoff_ns, cfg->doublings);
}

/* steer_retry_first says whether the DHCPDISCOVER at base, a unicast one,
 * goes to the priority socket: its client retransmits (secs above 0), the
 * DISCOVER holdoff would not drop it, and this second's allowance
 * (STEER_RETRIES_FIRST) has room, which it then spends, noting the
 * DISCOVER in steer_ahead for the priority socket's filter. A
 * retransmission the allowance has no room for is counted too, as is one
 * whose twin (the same client, xid, secs and relay) still has its note:
 * it goes to the bulk socket, so that the twin's note is the twin's. */
static __always_inline int steer_retry_first(struct __sk_buff *skb, __u32 base)
{
	__u32 zero = 0;
	struct retry_window *w;
	struct ahead k;

	if (!steer_ahead_key(skb, base, &k) || steer_held_now(&k.c) ||
	    !(w = bpf_map_lookup_elem(&steer_retries, &zero)))
		return 0;
	__u64 now = bpf_ktime_get_ns();
	/* Signed: another CPU may have begun the second after this one
	 * read the clock. */
	if ((__s64)(now - w->start) >= (__s64)NSEC_PER_SEC) {
		w->start = now;
		w->used = 0;
	}
	if (w->used >= STEER_RETRIES_FIRST || bpf_map_update_elem(&steer_ahead, &k, &now, BPF_NOEXIST)) {
		steer_counted(STEER_RETRIES_OVER);
		return 0;
	}
	__sync_fetch_and_add(&w->used, 1);
	steer_counted(STEER_RETRIES_AHEAD);
	return 1;
}

/* steer_taken_ahead says whether the DHCPDISCOVER at base is one
 * steer_reuseport let first (its note in steer_ahead, fresh), taking the
 * note: the next such datagram spends the allowance again. */
static __always_inline int steer_taken_ahead(struct __sk_buff *skb, __u32 base)
{
	struct ahead k;

	if (!steer_ahead_key(skb, base, &k))
		return 0;
	__u64 *at = bpf_map_lookup_elem(&steer_ahead, &k);
	if (!at)
		return 0;
	int fresh = bpf_ktime_get_ns() - *at < STEER_AHEAD_NS;
	bpf_map_delete_elem(&steer_ahead, &k);
	return fresh;
}

SEC("socket")
int steer_reuseport(struct __sk_buff *skb)
{
	__u8 type = steer_type(skb, 0);

	if (type == DHCPDISCOVER && steer_retry_first(skb, 0))
		return STEER_PRIORITY;
	return steer_class(type);
}

/* steer_forget lets a client (its DHCP message at base) off seen's
 * holdoff (of holdoff), once its own holdoff at most (struct seen,
 * steer_own). A client
 * that sent a REQUEST, DECLINE or RELEASE moves on from DISCOVER, so its
 * next DISCOVER (after a NAK, a decline, a release or a reboot) is not a
 * repeat; one whose DISCOVER was let in starts an exchange, so its next
 * REQUEST is not a repeat either. With the holdoff off the client is
 * forgotten outright, as a bound client's entry needs no keeping; with it
 * on, a client that nothing holds spends no pass. */
static __always_inline void steer_forget(struct __sk_buff *skb, __u32 base, void *seen, __u64 holdoff, __u32 allowed)
{
	struct client c;

	if (!steer_client(skb, base, &c))
		return;
	if (!holdoff) {
		bpf_map_delete_elem(seen, &c);
		return;
	}
	struct seen *e = bpf_map_lookup_elem(seen, &c);
	if (!e)
		return;
	__u64 now = bpf_ktime_get_ns();
	/* A client whose holdoff doubled for repeats is let off once
	 * its own holdoff at most: a flood alternating DISCOVERs and
	 * REQUESTs would otherwise get two of each per holdoff still. */
	__u64 own = steer_own(e, holdoff, allowed);

	if (!e->at || now - e->at >= own)
		return;
	if (e->pass_at && now - e->pass_at < own)
		return;
	e->at = 0;
	e->pass_at = now;
}

/* steer_keep_discover is what a socket keeps of the DHCPDISCOVER at
 * UDP_HLEN: nothing when it repeats within the DISCOVER holdoff
 * (steer_repeat), else all of it, its client let off the REQUEST
 * holdoff (steer_forget). */
static __always_inline int steer_keep_discover(struct __sk_buff *skb, struct settings *cfg)
{
	if (!cfg)
		return skb->len;
	if (steer_repeat(skb, UDP_HLEN, &steer_seen, cfg->holdoff_ns, cfg->doublings, STEER_HELD_DISCOVER))
		return 0;
	steer_forget(skb, UDP_HLEN, &steer_req_seen, cfg->request_holdoff_ns, cfg->request_doublings);
	return skb->len;
}

SEC("socket")
int steer_keep_priority(struct __sk_buff *skb)
{
	__u8 type = steer_type(skb, UDP_HLEN);
	struct settings *cfg = steer_settings_get();

	/* A DISCOVER steer_reuseport let first, not a broadcast one's copy
	 * (the bulk socket's). The DISCOVER holdoff holds it as it would
	 * there. */
	if (type == DHCPDISCOVER)
		return steer_taken_ahead(skb, UDP_HLEN) ? steer_keep_discover(skb, cfg) : 0;
	if (steer_class(type) != STEER_PRIORITY)
		return 0;
	if (!cfg)
		return skb->len;
	if (type == DHCPREQUEST &&
	    steer_repeat(skb, UDP_HLEN, &steer_req_seen, cfg->request_holdoff_ns, cfg->request_doublings,
			 STEER_HELD_REQUEST))
		return 0;
	steer_forget(skb, UDP_HLEN, &steer_seen, cfg->holdoff_ns, cfg->doublings);
	return skb->len;
}

SEC("socket")
int steer_keep_bulk(struct __sk_buff *skb)
{
	__u8 type = steer_type(skb, UDP_HLEN);
	struct settings *cfg = steer_settings_get();

	if (steer_class(type) != STEER_BULK)
		return 0;
	if (type == DHCPDISCOVER)
		return steer_keep_discover(skb, cfg);
	return skb->len;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
