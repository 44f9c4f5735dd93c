/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What xdp_dhcp.c shares with the daemon: the limits and flags of the
 * contract, the structs of the map entries (bpf2go generates their Go
 * types), and the maps themselves, described in one table below. And the
 * program's own per-CPU scratch map, beside them.
 */
#ifndef XDHCP_MAPS_H
#define XDHCP_MAPS_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "dhcp_proto.h"

/*
 * The contract with the daemon: limits of what the maps hold, the sizes
 * both paths give a reply, and flag bits. Enums, not #defines, so that
 * bpf2go -type exports them to Go (bpf.XdpXdhcpLimit*, ...), where
 * fastpath uses them instead of copies.
 */
enum xdhcp_limit {
	CHADDR_MAX = 16,  /* hardware address bytes an entry holds */
	CID_MAX = 32,     /* longer client identifiers are never published */
	TMPL_MAX = 512,   /* option block of a reply template */
	REQ_MAX = 1024,   /* DHCP payload of a request we parse; larger: punt */
	MIN_REPLY = 300,  /* RFC 1542 minimum BOOTP message: both paths pad to it */
	REPLY_ALIGN = 4,  /* replies are padded to a multiple of it where room allows */
	L34 = 28,         /* IPv4 header without options + UDP header, as option 57 counts */
	DEFAULT_MAX_MSG = 576, /* a client's maximum message size without option 57 */
};

/* Lease flags, xdhcp_lease.flags. */
enum xdhcp_lease_flag {
	XDHCP_LEASE_SERVE = 1, /* clear: failover or a pending FORCERENEW forbids answering */
};

/* Config flags, xdhcp_settings.flags. */
enum xdhcp_cfg_flag {
	XDHCP_CFG_ANSWER = 1, /* clear: pass every renewal up */
};

#define MAX_OPTS 96      /* option walk bound, pad bytes included */
#define HEAD_OPTS (3 + 4 * 6) /* 53 (1 byte), then 54, 51, 58, 59 (4 bytes each) */
#define REPLY_TTL 64     /* pktio.ReplyTTL: the slow path's replies carry the same */
#define EV_SLOTS (1 << 15) /* events per CPU ring; a power of two */
/* The longest reply: 53-59, a full template, 61 and 82, END, on 4 bytes. */
#define PLEN_MAX ((DHCP_OPTIONS + HEAD_OPTS + TMPL_MAX + (2 + CID_MAX) + (2 + 255) + 1 + 3) & ~3)
#define OUT_MAX (L34 + PLEN_MAX + 64) /* word copies may run past the end */

/* A lease the fast path may renew, keyed by its address (network order).
 * Only the daemon writes it: what the program grants goes to xdhcp_grants
 * (one writer per map field, docs/ARCHITECTURE.md invariant 9). */
struct xdhcp_lease {
	__u64 expiry;   /* unix seconds, as bbolt has it; the grant's may be later */
	__u64 horizon;  /* unix seconds; no grant may end later (promise horizon) */
	__u64 relay_fp; /* relay_fp() of the option 82 stored with the lease; 0: none */
	__u64 gen;      /* the binding: new whenever the address changes hands; never 0 */
	__u32 ifindex;  /* where a direct lease was granted */
	__u32 giaddr;   /* relay of a relayed lease; 0: directly attached */
	__u32 server_id;  /* option 54, and the reply's source address */
	__u32 lease_time; /* configured seconds, with T1 and T2 */
	__u32 t1;
	__u32 t2;
	__u32 tmpl_id;  /* key in xdhcp_tmpls */
	__u16 vlan[2];  /* outer and inner VLAN ID of a direct lease; 0: none */
	__u8 htype;
	__u8 hlen;
	__u8 cid_len;   /* 0: the lease was granted without a client identifier */
	__u8 flags;
	__u8 chaddr[CHADDR_MAX];
	__u8 cid[CID_MAX];
	/* Index of the binding's grant in xdhcp_grants; never 0. Last, in
	 * what was the struct's tail padding, so that the fields before it
	 * keep their offsets. */
	__u32 grant_slot;
};

/* What the program granted to one binding of an address, in the slot of
 * xdhcp_grants that the daemon gave the binding (xdhcp_lease.grant_slot).
 * Only the program writes a slot while a lease entry names it; the daemon
 * writes a slot only to hand it to a new binding (gen set, the rest zero),
 * and only after every program run that could still see the slot's
 * previous binding has ended (fastpath: a grace period between freeing and
 * reuse), so no grant to an earlier holder can land in the next one's slot.
 * The program uses a slot only when its gen is the lease's. A lease's
 * expiry is the later of the entry's and its grant's. cltt_ns 0: no renewal
 * answered yet. */
struct xdhcp_grant {
	__u64 gen;      /* xdhcp_lease.gen of the binding the slot belongs to */
	__u64 expiry;   /* unix seconds: the latest expiry granted; only raised */
	__u64 cltt_ns;  /* unix nanoseconds (coarse clock) of the last renewal answered: the
	                 * slow path orders it against its own ACKs, which can fall in the same second */
	__u32 xid;      /* of that renewal */
	__u32 last_giaddr; /* relay it came through; 0: direct or past the relay */
};

/* A subnet's option block, copied into every reply after 53,54,51,58,59. */
struct xdhcp_template {
	__u32 len;
	__u32 used;     /* the slot holds a template: an array has no absent entries */
	__u8 data[TMPL_MAX];
};

/* Global settings, one entry. */
struct xdhcp_settings {
	__s64 wall_offset_ns; /* unix time minus CLOCK_MONOTONIC, kept fresh by the daemon */
	__u32 min_grant;      /* seconds; a shorter grant is punted */
	__u32 punt_rate;      /* punts per second per client MAC; 0: unlimited */
	__u32 punt_burst;
	__u32 flags;
	/* relay_fp's key: random, chosen by the daemon when this map is
	 * created and kept with it, so that a relay cannot engineer two
	 * option 82 bodies with one fingerprint. */
	__u64 fp_key;
};

/* An interface XDP is attached to, keyed by ifindex. */
struct xdhcp_iface {
	__u8 mac[ETH_ALEN]; /* reply source MAC when the request was broadcast */
	__u16 pad;
};

/* One answered renewal, for the slow path to fold into bbolt. */
struct xdhcp_event {
	__u64 at_ns;   /* unix nanoseconds (coarse clock) of the renewal */
	__u64 expiry;
	__u32 ip;
	__u32 xid;
	__u32 ifindex;
	__u32 giaddr;
	__u16 vlan[2];
	__u8 hlen;
	__u8 pad[3];
	__u8 chaddr[CHADDR_MAX];
};

/* A CPU's event ring position: events written there so far. Alone on
 * its cache line, so that CPUs do not share lines they write. */
struct xdhcp_evhead {
	__u64 head;
	__u64 pad[7];
};

/* Counters, one per-CPU slot each. The daemon exports them as metrics. */
enum xdhcp_counter {
	XC_ANSWERED,
	XC_NOT_DHCP,      /* not UDP to port 67: not ours, passed */
	XC_MALFORMED,     /* to port 67 but not a well-formed BOOTP request */
	XC_UNSUPPORTED,   /* IP options, fragments, overload, oversized, repeated options, 118 */
	XC_NOT_RENEWAL,   /* another message type, or a REQUEST with 50/54 or no ciaddr */
	XC_NO_LEASE,
	XC_EXPIRED,
	XC_IDENTITY,      /* chaddr or client identifier differ */
	XC_WHERE,         /* other interface, VLAN, relay or server address */
	XC_NOT_SERVING,
	XC_HORIZON,       /* the horizon leaves less than min-grant */
	XC_TOO_BIG,       /* the reply would exceed the client's maximum message size */
	XC_DISABLED,
	XC_RATE_LIMITED,  /* punt dropped by the per-MAC token bucket */
	XC_EVENTS_LOST,   /* no ring slot (the reader counts lapped rings itself) */
	XC_ERROR,         /* a helper failed while building the reply; passed */
	XC_NO_ROOM,       /* the frame could not grow to the reply's size; passed */
	XC_RELAY_INFO,    /* relayed with an option 82 other than the one stored */
	XC_MAX,
};

/*
 * The maps, all pinned by name under fastpath.pin-dir (/sys/fs/bpf/xdhcp)
 * so that renewals keep being answered while the daemon restarts, except
 * the scratch map. Each field has one writer (invariant 9).
 *
 *   map             type                 key -> value                       written by
 *   xdhcp_leases    hash                 lease IP -> struct xdhcp_lease     daemon (fastpath.Maps.Publish)
 *   xdhcp_grants    array                grant slot -> struct xdhcp_grant   XDP; the daemon resets a
 *                                                                           slot it hands to a new binding
 *   xdhcp_tmpls     array                template id -> xdhcp_template      daemon (an array, not a
 *                                                                           hash: the lookup is inlined)
 *   xdhcp_ifaces    hash                 ifindex -> struct xdhcp_iface      daemon, at attach
 *   xdhcp_config    array                [0] -> struct xdhcp_settings       daemon (clock offset: each second)
 *   xdhcp_counters  per-CPU array        enum xdhcp_counter -> u64          XDP
 *   xdhcp_evring    mmapable array       per-CPU rings of xdhcp_event       XDP; the daemon reads by mmap
 *   xdhcp_evheads   mmapable array       CPU -> struct xdhcp_evhead         XDP; the daemon reads by mmap
 *   xdhcp_punts     LRU hash             client MAC -> struct bucket        XDP (punt rate limit)
 *   xdhcp_scratch   per-CPU array        [0] -> struct scratch              XDP (work buffers; not pinned)
 *
 * The loader sizes xdhcp_leases and xdhcp_grants for fastpath.max-leases
 * and the event rings for the possible CPUs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 21);
	__type(key, __u32);
	__type(value, struct xdhcp_lease);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_leases SEC(".maps");

/* A slot per lease, a quarter more (slots freed wait for a grace period
 * before reuse) and slot 0, unused: the loader sizes both maps
 * (loader.GrantSlots). An array, not a hash keyed by address: the
 * verifier inlines its lookup, and the program never inserts (issue 15:
 * the hash cost about 15% per renewal). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, (1 << 21) + (1 << 19) + 1);
	__type(key, __u32);
	__type(value, struct xdhcp_grant);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_grants SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct xdhcp_template);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_tmpls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct xdhcp_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdhcp_settings);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XC_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_counters SEC(".maps");

/* Event rings: one per CPU, each EV_SLOTS slots of xdhcp_evring, written
 * only by its CPU and read through mmap by the daemon, so an event costs
 * a few stores instead of the ring buffer's lock. The loader sizes both
 * maps for the possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, EV_SLOTS); /* times the possible CPUs */
	__type(key, __u32);
	__type(value, struct xdhcp_event);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_evring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); /* one per possible CPU */
	__type(key, __u32);
	__type(value, struct xdhcp_evhead);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_evheads SEC(".maps");

struct bucket {
	__u64 at_ns;
	__u64 millitokens;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u64);
	__type(value, struct bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_punts SEC(".maps");

/* What the option walk found. It lives in the scratch map, not on the
 * stack, and the walk reads and writes it through a volatile pointer: the
 * verifier tracks stack and register values precisely and would explore
 * the walk once per option offset instead of once. */
struct walk {
	__u32 off, dlen, o61, o82, maxsz;
	__u8 mt, l61, l82, has50, has54, done, bad, unsup;
	__u32 at; /* see forget() */
	__u64 fp82; /* relay_fp() of option 82; 0: none */
};

struct scratch {
	__u8 req[REQ_MAX];
	/* The reply's L2 header is built at the end of l2, against out, so
	 * that the headers are copied into the frame as one run of words.
	 * 28 bytes also put the reply's DHCP part (out + L34) on 8 bytes. */
	__u8 l2[28];
	__u8 out[OUT_MAX];
	struct walk w;
	/* The unix second last computed on this CPU, the CLOCK_MONOTONIC
	 * time it began at, and the clock offset it was computed with. */
	__u64 sec, sec_start;
	__s64 sec_offset;
	/* IP ID of this CPU's next reply. The kernel numbers the slow path's
	 * DF datagrams too (hashed per destination since Linux 6.x; RFC 6864
	 * lets an atomic datagram carry any ID), so a constant 0 would tell
	 * the fast path's replies apart. */
	__u32 ip_id;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} xdhcp_scratch SEC(".maps");

#endif
