//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_dhcp answers DHCPREQUESTs in RENEWING and REBINDING state from the
 * lease map, building the DHCPACK in place and sending it with XDP_TX.
 * Everything it does not fully understand is passed up unchanged to the
 * slow path (DESIGN.md invariant 5). The slow path owns every policy: it
 * fills the maps below and folds the ring-buffer events back into bbolt.
 *
 * Work is done in a per-CPU scratch buffer rather than on packet pointers:
 * the request is copied out word by word, the reply is built and
 * checksummed there, and written back word by word once the frame has its
 * new length. The option walk and the reply's variable parts then only
 * need offsets bounded inside a map value, and the frame itself is only
 * touched by copies whose every word is checked against its end. Plain
 * loads and stores, not bpf_xdp_load_bytes/store_bytes: each helper call
 * cost more than the copy it made.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "eth.h"

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
#define BOOTP_LEN 236
#define OPTS_OFF 240     /* BOOTP header + magic cookie */
#define HEAD_OPTS 27     /* 53, 54, 51, 58, 59 */
#define IP_DF 0x4000     /* Don't Fragment, in frag_off */
#define REPLY_TTL 64     /* pktio.ReplyTTL: the slow path's replies carry the same */
#define EV_SLOTS (1 << 15) /* events per CPU ring; a power of two */
/* The longest reply: 53-59, a full template, 61 and 82, END, on 4 bytes. */
#define PLEN_MAX ((OPTS_OFF + HEAD_OPTS + TMPL_MAX + CID_MAX + 2 + 257 + 1 + 3) & ~3)
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
	__u32 tmpl_id;  /* key in xdhcp_templates */
	__u16 vlan[2];  /* outer and inner VLAN ID of a direct lease; 0: none */
	__u8 htype;
	__u8 hlen;
	__u8 cid_len;   /* 0: the lease was granted without a client identifier */
	__u8 flags;
	__u8 chaddr[CHADDR_MAX];
	__u8 cid[CID_MAX];
};

/* What the program granted to one binding of an address, keyed by the
 * address and the binding's generation, so that a grant to an earlier
 * holder of the address never counts for the next one. Only the program
 * writes it; the daemon reads it and deletes the grants of bindings it
 * replaced or removed. A lease's expiry is the later of the entry's and
 * its grant's. An entry with cltt 0 records no renewal: the program makes
 * it when it first looks at one, before it knows whether it answers. */
struct xdhcp_grant_key {
	__u32 ip;
	__u32 pad;      /* zero */
	__u64 gen;      /* xdhcp_lease.gen */
};

struct xdhcp_grant {
	__u64 expiry;   /* unix seconds: the latest expiry granted; only raised */
	__u64 cltt;     /* unix seconds of the last renewal answered */
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
};

/* An interface XDP is attached to, keyed by ifindex. */
struct xdhcp_iface {
	__u8 mac[ETH_ALEN]; /* reply source MAC when the request was broadcast */
	__u16 pad;
};

/* One answered renewal, for the slow path to fold into bbolt. */
struct xdhcp_event {
	__u64 at;
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
 * The maps, all pinned by name under /sys/fs/bpf/xdhcp/ so that renewals
 * keep being answered while the daemon restarts.
 *
 *   xdhcp_leases     hash  lease IP -> struct xdhcp_lease   (slow path writes; XDP reads)
 *   xdhcp_grants     hash  {IP, gen} -> struct xdhcp_grant  (XDP writes; the daemon reads and
 *                          deletes those of replaced bindings)
 *   xdhcp_tmpls      array template id -> struct xdhcp_template (slow path; an
 *                          array, not a hash: the lookup is inlined, no hashing)
 *   xdhcp_ifaces     hash  ifindex -> struct xdhcp_iface    (loader)
 *   xdhcp_config     array [0] -> struct xdhcp_settings       (daemon)
 *   xdhcp_counters   per-CPU array enum xdhcp_counter -> u64 (XDP)
 *   xdhcp_evring     mmapable array: per-CPU rings of struct xdhcp_event (XDP -> daemon)
 *   xdhcp_evheads    mmapable array: CPU -> struct xdhcp_evhead, each ring's head (XDP -> daemon)
 *   xdhcp_punts      LRU hash client MAC -> token bucket    (XDP)
 *   xdhcp_scratch    per-CPU array [0] -> work buffers      (XDP)
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 21);
	__type(key, __u32);
	__type(value, struct xdhcp_lease);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdhcp_leases SEC(".maps");

/* As many as leases: the loader sizes both. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 21);
	__type(key, struct xdhcp_grant_key);
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

/* Referenced so that bpf2go -type finds them in BTF. */
const enum xdhcp_counter *unused_counter __attribute__((unused));
const struct xdhcp_event *unused_event __attribute__((unused));
const struct xdhcp_evhead *unused_evhead __attribute__((unused));
const enum xdhcp_limit *unused_limit __attribute__((unused));
const enum xdhcp_lease_flag *unused_lease_flag __attribute__((unused));
const enum xdhcp_cfg_flag *unused_cfg_flag __attribute__((unused));

struct l34 {
	__u8 vihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 proto;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__be16 ulen;
	__be16 ucheck;
};

static __always_inline void count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&xdhcp_counters, &c);
	if (v)
		*v += 1;
}

/* punt passes a request up unless its client's token bucket is empty. */
static __always_inline int punt(const struct xdhcp_settings *cfg, const __u8 *chaddr, __u64 mono_ns, __u32 why)
{
	count(why);
	if (!cfg || !cfg->punt_rate || !chaddr)
		return XDP_PASS;
	__u64 key = 0;
	__builtin_memcpy(&key, chaddr, ETH_ALEN);
	__u64 cap = (__u64)cfg->punt_burst * 1000;
	if (cap < 1000)
		cap = 1000;
	struct bucket *b = bpf_map_lookup_elem(&xdhcp_punts, &key);
	if (!b) {
		struct bucket nb = { .at_ns = mono_ns, .millitokens = cap - 1000 };
		bpf_map_update_elem(&xdhcp_punts, &key, &nb, BPF_ANY);
		return XDP_PASS;
	}
	__u64 el = mono_ns - b->at_ns;
	if (el > 100000000000ULL) /* 100 s refills any sane bucket; keeps the product small */
		el = 100000000000ULL;
	__u64 t = b->millitokens + el * cfg->punt_rate / 1000000;
	if (t > cap)
		t = cap;
	b->at_ns = mono_ns;
	if (t < 1000) {
		b->millitokens = t;
		count(XC_RATE_LIMITED);
		return XDP_DROP;
	}
	b->millitokens = t - 1000;
	return XDP_PASS;
}

static __always_inline __u32 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u32)s;
}

/* lowmasks[64 + r] selects the first r bytes of a little-endian word:
 * none for r <= 0, all for r >= 8, for r in [-64, 63] (a 32-byte client
 * identifier asks for r = 32). A table, not a computation: every branch
 * of one would be explored with the rest of the program. */
static const __u64 lowmasks[128] = {
	[0 ... 64] = 0,
	[65] = 0xff, [66] = 0xffff, [67] = 0xffffff, [68] = 0xffffffff,
	[69] = 0xffffffffffULL, [70] = 0xffffffffffffULL, [71] = 0xffffffffffffffULL,
	[72 ... 127] = ~0ULL,
};

static __always_inline __u64 lowmask(__s64 r)
{
	/* r made opaque to clang, which would otherwise drop the mask where
	 * it knows r's range, leaving an index the verifier cannot bound. */
	asm volatile("" : "+r"(r));
	return lowmasks[(r + 64) & 127];
}

/* forget passes a value through memory, so that the verifier no longer
 * knows which path produced it: each exit of a length-bounded unrolled
 * copy would otherwise be explored with the rest of the program, and the
 * copies multiply. Callers bound the value again. */
static __always_inline __u64 forget(struct walk *w, __u32 v)
{
	*(volatile __u32 *)&w->at = v;
	return *(volatile __u32 *)&w->at;
}

/* raise_u64 sets *p to v unless it holds more: a compare-and-swap, since
 * two CPUs may answer the same client at once (a retransmission) and a
 * plain store could lower what the other just raised. Each failed swap
 * means another CPU raised *p meanwhile; a few tries outlast any real
 * contention on one client's address. */
static __always_inline void raise_u64(__u64 *p, __u64 v)
{
	__u64 cur = *(volatile __u64 *)p;
#pragma clang loop unroll(disable)
	for (int i = 0; i < 4; i++) {
		if (cur >= v)
			break;
		__u64 was = __sync_val_compare_and_swap(p, cur, v);
		if (was == cur)
			break;
		cur = was;
	}
}

static __always_inline void put32(__u8 *p, __u32 host)
{
	p[0] = host >> 24;
	p[1] = host >> 16;
	p[2] = host >> 8;
	p[3] = host;
}

/* COPY_WORDS copies n bytes (at most max) from src to dst in 8-byte
 * words, unrolled without break: once a test fails every later one is
 * decided, so the verifier walks this in a line, not a tree. Words are
 * tested in groups of eight first, so a short copy costs a few tests
 * rather than one per word of max. dst gets up to 7 bytes past n. */
#define COPY_WORDS(dst, src, n, max)                                           \
	_Pragma("unroll") for (int g_ = 0; g_ < ((max) + 63) / 64; g_++)       \
		if (g_ * 64 < (n))                                             \
			_Pragma("unroll") for (int w_ = 0; w_ < 8; w_++)      \
				if (g_ * 64 + w_ * 8 < (n) && g_ * 64 + w_ * 8 < (max)) \
					*(__u64 *)((__u8 *)(dst) + g_ * 64 + w_ * 8) = \
						*(__u64 *)((__u8 *)(src) + g_ * 64 + w_ * 8)

/* SUM_WORDS adds the n bytes (a multiple of 4, at most max) at src to sum
 * as 32-bit words, shaped as COPY_WORDS. */
#define SUM_WORDS(sum, src, n, max)                                            \
	_Pragma("unroll") for (int g_ = 0; g_ < ((max) + 63) / 64; g_++)       \
		if (g_ * 64 < (n))                                             \
			_Pragma("unroll") for (int w_ = 0; w_ < 16; w_++)     \
				if (g_ * 64 + w_ * 4 < (n) && g_ * 64 + w_ * 4 < (max)) \
					(sum) += *(__u32 *)((__u8 *)(src) + g_ * 64 + w_ * 4)

#define PUNT(why) return punt(cfg, chaddr, mono_ns, why)

/* PKT_WORDS copies n bytes (at most max) between frame and scratch in
 * 8-byte words, shaped as COPY_WORDS; pkt, which is src or dst, is checked
 * against the frame's end before each word (jumping to bad when past it).
 * Only whole words inside n are copied: the caller copies the tail as one
 * word ending at n. */
#define PKT_WORDS(pkt, src, dst, n, max, end, bad)                             \
	_Pragma("unroll") for (int g_ = 0; g_ < ((max) + 63) / 64; g_++)       \
		if (g_ * 64 + 8 <= (n))                                        \
			_Pragma("unroll") for (int w_ = 0; w_ < 8; w_++)      \
				if (g_ * 64 + w_ * 8 + 8 <= (n) && g_ * 64 + w_ * 8 + 8 <= (max)) { \
					if ((void *)((pkt) + g_ * 64 + w_ * 8 + 8) > (end)) \
						goto bad;                              \
					*(__u64 *)((__u8 *)(dst) + g_ * 64 + w_ * 8) = \
						*(__u64 *)((__u8 *)(src) + g_ * 64 + w_ * 8); \
				}

/* walk_step looks at the option at w->off; returns 1 to stop. */
static __always_inline int walk_step(__u8 *rq, volatile struct walk *w)
{
	__u32 off = w->off, dlen = w->dlen;
	if (off >= dlen)
		return 1; /* ran out before END */
	__u8 code = rq[off & (REQ_MAX - 1)];
	if (code == 0) {
		w->off = off + 1;
		return 0;
	}
	if (code == 255) {
		w->done = 1;
		return 1;
	}
	if (off + 2 > dlen) {
		w->bad = 1;
		return 1;
	}
	__u8 n = rq[(off + 1) & (REQ_MAX - 1)];
	if (off + 2 + n > dlen) {
		w->bad = 1;
		return 1;
	}
	__u32 v = (off + 2) & (REQ_MAX - 1);
	switch (code) {
	case 53: /* a second 53 after one of value 0 is a second one too */
		if (n != 1 || w->mt || !rq[v])
			w->unsup = 1;
		w->mt = rq[v];
		break;
	case 50:
		w->has50 = 1;
		break;
	case 54:
		w->has54 = 1;
		break;
	case 52: /* overload: options continue in sname/file */
	case 118: /* subnet selection (RFC 3011): the slow path echoes it, this program does not */
		w->unsup = 1;
		break;
	case 57: /* the slow path drops a 57 not 2 bytes or below 576 as malformed */
		if (n != 2) {
			w->bad = 1;
			return 1;
		} else {
			__u32 m = ((__u32)rq[v] << 8) | rq[(v + 1) & (REQ_MAX - 1)];
			if (m < 576) {
				w->bad = 1;
				return 1;
			}
			w->maxsz = m;
		}
		break;
	case 51: /* requested lease time: the slow path drops one not 4 bytes */
		if (n != 4) {
			w->bad = 1;
			return 1;
		}
		break;
	case 61:
		if (w->o61 || n < 2)
			w->unsup = 1;
		w->o61 = off;
		w->l61 = n;
		break;
	case 82:
		if (w->o82)
			w->unsup = 1; /* split (RFC 3396): the slow path concatenates */
		w->o82 = off;
		w->l82 = n;
		break;
	}
	w->off = off + 2 + n;
	return 0;
}

/*
 * relay_fp is the fingerprint of an option 82 body, the n (<= 255) bytes
 * at off in the request. fastpath.RelayInfoFingerprint computes the same
 * over the body the slow path stored with the lease:
 *
 *	n == 0:	0, as for a lease with no option 82 stored
 *	else:	h = FP_SEED ^ n
 *		for each 8 bytes of the body as a little-endian word w,
 *		the last one zero-padded:
 *			h = (h ^ w) * FP_MUL
 *			h ^= h >> 32
 *		h | 1, never 0
 *
 * Not cryptographic: it tells a changed circuit-id or remote-id for a
 * multiply per 8 bytes, without 255 bytes per lease entry. Taken at the
 * end of walk_options, so it is verified once with the walk and costs no
 * call of its own.
 */
#define FP_SEED 0x9e3779b97f4a7c15ULL
#define FP_MUL 0xff51afd7ed558ccdULL

static __always_inline __u64 relay_fp(struct scratch *s, __u32 off, __u32 n)
{
	if (!s || !n)
		return 0;
	/* Words past the body (at most 7 bytes) stay inside the scratch
	 * value and are masked off. */
	__u8 *b = &s->req[off & (REQ_MAX - 1)];
	__u64 h = FP_SEED ^ n;
	__s32 r = n; /* bytes left */
#pragma clang loop unroll(disable)
	for (int i = 0; i < 256 / 8; i++, r -= 8) {
		/* The end and the last word are both told by r: tested as
		 * i * 8 >= n, the verifier could not tell that the masked
		 * word was the last and went on through the remaining
		 * iterations from each one (8k instructions, not 1k). */
		if (r <= 0)
			break;
		__u64 w = *(__u64 *)&b[i * 8];
		if (r < 8)
			w &= lowmask(r);
		h = (h ^ w) * FP_MUL;
		h ^= h >> 32;
	}
	return h | 1;
}

/*
 * relay_ok tells whether an option 82 body, the n bytes at off, passes the
 * slow path's checks (dhcpwire checkRelayInfo): at least one sub-option,
 * none running past the body, link selection (5) and server identifier
 * override (11) of 4 bytes. A direct renewal's 82 (a snooping switch's) is
 * not compared with a stored one, and is echoed: a malformed one must go
 * to the slow path, which drops it. Each sub-option takes at least 2 of
 * the at most 255 bytes, so 128 steps reach the end.
 */
static __always_inline int relay_ok(struct scratch *s, __u32 off, __u32 n)
{
	if (!n)
		return 0;
	__u32 i = 0;
#pragma clang loop unroll(disable)
	for (int k = 0; k < 128; k++) {
		if (i >= n)
			break;
		if (i + 2 > n)
			return 0;
		__u8 c = s->req[(off + i) & (REQ_MAX - 1)];
		__u8 m = s->req[(off + i + 1) & (REQ_MAX - 1)];
		if (i + 2 + m > n)
			return 0;
		if ((c == 5 || c == 11) && m != 4)
			return 0;
		i += 2 + m;
	}
	return 1;
}

/* walk_options walks the request's options into s->w. A global function,
 * so that the verifier checks it once on its own: inline, each way out of
 * the loop would be followed through the rest of the program. A plain
 * call, where bpf_loop made one indirect call per few options. */
__noinline int walk_options(struct scratch *s)
{
	if (!s)
		return 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < MAX_OPTS; i++)
		if (walk_step(s->req, &s->w))
			break;
	if (s->w.o82 && !relay_ok(s, s->w.o82 + 2, s->w.l82))
		s->w.bad = 1;
	s->w.fp82 = s->w.o82 ? relay_fp(s, s->w.o82 + 2, s->w.l82) : 0;
	return 0;
}

SEC("xdp")
int xdp_dhcp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;

	struct ethhdr *eth = data;
	__be16 proto;
	__u32 tag[2] = {};
	int hl = parse_eth(data, end, &proto, tag);
	if (hl < 0)
		return XDP_PASS;
	__u32 l3 = hl;
	__be16 tpid = eth->h_proto; /* the L2 header as received, for the reply */
	__u16 vlan[2] = {vlan_id(tag[0]), vlan_id(tag[1])};
	if (proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;

	struct l34 *hp = data + l3;
	if ((void *)(hp + 1) > end)
		return XDP_PASS;
	struct l34 h = *hp; /* packet pointers do not survive the resize */
	if ((h.vihl >> 4) != 4 || h.proto != IPPROTO_UDP)
		return XDP_PASS;
	if ((h.vihl & 0xf) != 5) {
		/* UDP port unknown without parsing the options: not ours to judge. */
		count(XC_NOT_DHCP);
		return XDP_PASS;
	}
	if (h.dport != bpf_htons(67)) {
		count(XC_NOT_DHCP);
		return XDP_PASS;
	}

	struct xdhcp_settings *cfg = bpf_map_lookup_elem(&xdhcp_config, &zero);
	struct scratch *s = bpf_map_lookup_elem(&xdhcp_scratch, &zero);
	if (!cfg || !s)
		return XDP_PASS;
	/* The coarse clock (a tick behind at most) is enough for times kept
	 * in seconds and for the punt buckets, and costs a fraction. */
	__u64 mono_ns = bpf_ktime_get_coarse_ns();
	const __u8 *chaddr = NULL; /* the rate limiter's key, once known */

	if (h.frag_off & bpf_htons(0x3fff))
		PUNT(XC_UNSUPPORTED);
	__u32 frame = (__u32)(end - data);
	__u32 ip_len = bpf_ntohs(h.tot_len);
	__u32 udp_len = bpf_ntohs(h.ulen);
	if (ip_len < L34 || l3 + ip_len > frame || udp_len != ip_len - 20)
		PUNT(XC_MALFORMED);
	__u32 dlen = udp_len - 8;
	if (dlen < OPTS_OFF + 1)
		PUNT(XC_MALFORMED);
	if (dlen > REQ_MAX)
		PUNT(XC_UNSUPPORTED);
	/* Copy the request into scratch with plain loads (a helper call costs
	 * more than the copy): the BOOTP fields before sname, the cookie, and
	 * the options, skipping sname and file. Every word read lies inside
	 * [0, dlen), the last one overlapping its neighbour, so nothing past
	 * the datagram is read; each carries the bounds check the verifier
	 * wants for a variable offset, and it never fails once dlen fits. */
	__u8 *dh = (__u8 *)(hp + 1);
	if ((void *)(dh + OPTS_OFF + 1) > end)
		PUNT(XC_MALFORMED);
	__u8 *rq = s->req;
#pragma unroll
	for (int i = 0; i < 6; i++)
		((__u64 *)rq)[i] = *(__u64 *)&dh[i * 8];
	*(__u64 *)&rq[BOOTP_LEN - 4] = *(__u64 *)&dh[BOOTP_LEN - 4];
	PKT_WORDS(dh + OPTS_OFF, dh + OPTS_OFF, rq + OPTS_OFF, dlen - OPTS_OFF, REQ_MAX - OPTS_OFF, end, malformed);
	__u32 last = (dlen - 8) & (REQ_MAX - 1);
	__u8 *pl = dh + last;
	asm volatile("" : "+r"(pl)); /* see pt below */
	if ((void *)(pl + 8) > end)
		goto malformed;
	*(__u64 *)&rq[last] = *(__u64 *)pl;
	/* Each word's check widened the range the verifier knows for the
	 * frame's pointers, one state per length; fresh pointers with one
	 * small range let the rest of the program be verified once. */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		PUNT(XC_ERROR);
	if (0) {
malformed:
		PUNT(XC_MALFORMED);
	}
	if (rq[0] != 1 || rq[2] > CHADDR_MAX || rq[236] != 99 || rq[237] != 130 || rq[238] != 83 || rq[239] != 99)
		PUNT(XC_MALFORMED);
	chaddr = &rq[28];

	/* Walk the options in a function of its own: it is verified once,
	 * where an unrolled walk multiplies the verifier's states by every
	 * combination of options seen. */
	struct walk *w = &s->w;
	__builtin_memset(w, 0, sizeof(*w));
	w->off = OPTS_OFF;
	w->dlen = dlen;
	w->maxsz = DEFAULT_MAX_MSG;
	walk_options(s);
	__u32 o61 = w->o61, o82 = w->o82, maxsz = w->maxsz;
	__u8 mt = w->mt, l61 = w->l61, l82 = w->l82;
	if (w->bad)
		PUNT(XC_MALFORMED);
	if (!w->done || w->unsup)
		PUNT(XC_UNSUPPORTED);

	__u32 ciaddr = *(__u32 *)&rq[12];
	__u32 giaddr = *(__u32 *)&rq[24];
	if (mt != 3 || w->has50 || w->has54 || !ciaddr)
		PUNT(XC_NOT_RENEWAL);
	if (!(cfg->flags & XDHCP_CFG_ANSWER))
		PUNT(XC_DISABLED);

	struct xdhcp_lease *l = bpf_map_lookup_elem(&xdhcp_leases, &ciaddr);
	if (!l)
		PUNT(XC_NO_LEASE);
	/* Unix seconds. BPF has no multiply-high, so dividing by 10^9 is a
	 * real division; it is done once a second per CPU, and otherwise
	 * the second found last time is used while mono_ns stays inside it
	 * under the same clock offset. */
	__s64 off = cfg->wall_offset_ns;
	__u64 now = s->sec;
	if (mono_ns < s->sec_start || mono_ns >= s->sec_start + 1000000000ULL || off != s->sec_offset || !now) {
		now = (mono_ns + off) / 1000000000ULL;
		s->sec = now;
		s->sec_start = now * 1000000000ULL - off;
		s->sec_offset = off;
	}
	/* The binding's grant: the lease ends at the later of its expiry and
	 * the grant's. A renewal is recorded in g before its reply leaves;
	 * made here, while the request can still be passed up, an empty one
	 * when there is none yet (expiry 0 and cltt 0: no renewal). Another
	 * CPU may make it first: then the lookup finds that one. */
	struct xdhcp_grant_key gk = { .ip = ciaddr, .gen = l->gen };
	struct xdhcp_grant *g = bpf_map_lookup_elem(&xdhcp_grants, &gk);
	if (!g) {
		struct xdhcp_grant ng = {};
		bpf_map_update_elem(&xdhcp_grants, &gk, &ng, BPF_NOEXIST);
		g = bpf_map_lookup_elem(&xdhcp_grants, &gk);
		if (!g)
			PUNT(XC_ERROR); /* the grants map is full */
	}
	__u64 expiry = l->expiry;
	if (g->expiry > expiry)
		expiry = g->expiry;
	if (now >= expiry)
		PUNT(XC_EXPIRED);

	/* Identity: hardware address, and client identifier present in both or neither. */
	__u8 hlen = rq[2];
	if (rq[1] != l->htype || hlen != l->hlen)
		PUNT(XC_IDENTITY);
	/* Compared a word at a time under a mask of the first hlen bytes:
	 * a byte loop multiplies the verifier's states by every hlen. */
	if (((*(__u64 *)&rq[28] ^ *(__u64 *)&l->chaddr[0]) & lowmask(hlen)) ||
	    ((*(__u64 *)&rq[36] ^ *(__u64 *)&l->chaddr[8]) & lowmask((__s64)hlen - 8)))
		PUNT(XC_IDENTITY);
	if (l61 != l->cid_len || l61 > CID_MAX)
		PUNT(XC_IDENTITY);
	if (l61) {
		/* The entry's identifier is zero-padded; the request's is
		 * followed by other options, masked off. Reading up to 32
		 * bytes past the request's end stays inside the scratch value. */
		__u8 *c = &rq[(o61 + 2) & (REQ_MAX - 1)];
		__u64 *lc = (__u64 *)l->cid;
		if (((*(__u64 *)&c[0] ^ lc[0]) & lowmask(l61)) |
		    ((*(__u64 *)&c[8] ^ lc[1]) & lowmask((__s64)l61 - 8)) |
		    ((*(__u64 *)&c[16] ^ lc[2]) & lowmask((__s64)l61 - 16)) |
		    ((*(__u64 *)&c[24] ^ lc[3]) & lowmask((__s64)l61 - 24)))
			PUNT(XC_IDENTITY);
	}

	/* Where: the relay it was granted through or the client itself past
	 * the relay; for a direct lease the same interface and VLAN tags. */
	int relayed = giaddr != 0;
	if (l->giaddr) {
		if (!(giaddr == l->giaddr || (!relayed && h.saddr == ciaddr)))
			PUNT(XC_WHERE);
	} else if (relayed || ctx->ingress_ifindex != l->ifindex || vlan[0] != l->vlan[0] || vlan[1] != l->vlan[1]) {
		PUNT(XC_WHERE);
	}
	if (relayed ? h.sport != bpf_htons(67) : h.sport != bpf_htons(68))
		PUNT(XC_WHERE); /* RFC 8357 relay ports and odd clients: slow path */
	if (h.daddr != l->server_id && (relayed || h.daddr != 0xffffffff))
		PUNT(XC_WHERE);
	/* Option 82 as last received, which leasequery reports: a relay
	 * that now sends another one for this client (it moved port) goes
	 * to the slow path, which stores it and publishes its fingerprint.
	 * One without 82 (past the relay, or from a relay that adds none)
	 * leaves the stored one, as the slow path does. */
	if (relayed && o82 && w->fp82 != l->relay_fp)
		PUNT(XC_RELAY_INFO);
	if (!(l->flags & XDHCP_LEASE_SERVE))
		PUNT(XC_NOT_SERVING);

	/* Grant min(now + lease time, horizon), never less than min-grant. */
	__u64 exp = now + l->lease_time;
	if (exp > l->horizon)
		exp = l->horizon;
	if (exp < now + cfg->min_grant || exp <= now)
		PUNT(XC_HORIZON);
	__u32 grant = exp - now, t1 = l->t1, t2 = l->t2;
	if (grant < l->lease_time && l->lease_time) {
		t1 = (__u64)t1 * grant / l->lease_time;
		t2 = (__u64)t2 * grant / l->lease_time;
	}

	struct xdhcp_template *t = bpf_map_lookup_elem(&xdhcp_tmpls, &l->tmpl_id);
	if (!t || !t->used)
		PUNT(XC_ERROR);
	__u32 tlen = t->len;
	if (tlen > TMPL_MAX)
		PUNT(XC_ERROR);
	__u32 e61 = l61 ? 2 + l61 : 0, e82 = o82 ? 2 + l82 : 0;
	__u32 olen = OPTS_OFF + HEAD_OPTS + tlen + e61 + e82 + 1;
	__u32 plen = (olen + REPLY_ALIGN - 1) & ~(REPLY_ALIGN - 1U); /* summed and copied in words */
	if (plen < MIN_REPLY)
		plen = MIN_REPLY;
	if (plen > maxsz - L34 || plen > PLEN_MAX)
		PUNT(XC_TOO_BIG);

	/* Reply source: the address the request was sent to; the server
	 * identifier when it was broadcast. */
	struct xdhcp_iface *ifc = NULL;
	if (eth->h_dest[0] & 1) {
		__u32 ifindex = ctx->ingress_ifindex; /* a map key cannot point into ctx */
		ifc = bpf_map_lookup_elem(&xdhcp_ifaces, &ifindex);
		if (!ifc)
			PUNT(XC_ERROR);
	}

	/* Build IP + UDP + DHCP in s->out. */
	__u8 *o = s->out;
	__u8 *d = o + L34;
	/* BOOTP header: the fields through chaddr copied, then the ones a
	 * reply sets (RFC 2131 Table 3); sname and file zeroed, not copied. */
#pragma unroll
	for (int i = 0; i < 44 / 4; i++)
		((__u32 *)d)[i] = ((__u32 *)rq)[i];
	d[0] = 2;     /* op: BOOTREPLY */
	d[3] = 0;     /* hops */
	d[8] = 0;     /* secs */
	d[9] = 0;
	*(__u32 *)&d[16] = ciaddr; /* yiaddr */
	*(__u32 *)&d[20] = 0;      /* siaddr */
	/* sname and file (d[44..236)) stay zero: nothing writes them, and
	 * map values start zeroed. The UDP checksum skips them too. */
	*(__u32 *)&d[BOOTP_LEN] = *(__u32 *)&rq[BOOTP_LEN]; /* magic cookie */
	__u8 *p = d + OPTS_OFF;
	p[0] = 53, p[1] = 1, p[2] = 5;
	p[3] = 54, p[4] = 4;
	*(__u32 *)&p[5] = l->server_id;
	p[9] = 51, p[10] = 4;
	put32(&p[11], grant);
	p[15] = 58, p[16] = 4;
	put32(&p[17], t1);
	p[21] = 59, p[22] = 4;
	put32(&p[23], t2);
	/* The bytes past len in the last word are zero and get overwritten. */
	COPY_WORDS(&d[OPTS_OFF + HEAD_OPTS], t->data, tlen, TMPL_MAX);
	__u64 at = forget(w, OPTS_OFF + HEAD_OPTS + tlen);
	/* Echo 61 then 82 byte for byte from the request, a word at a time
	 * (the tail past n is overwritten). */
	if (l61) {
		__u32 n = l61 + 2;
		__u8 *src = &rq[o61 & (REQ_MAX - 1)];
		if (at > OPTS_OFF + HEAD_OPTS + TMPL_MAX)
			PUNT(XC_ERROR);
		COPY_WORDS(&d[at], src, n, CID_MAX + 2);
		at = forget(w, at + n);
	}
	if (o82) {
		__u32 n = l82 + 2;
		__u8 *src = &rq[o82 & (REQ_MAX - 1)];
		if (at > OPTS_OFF + HEAD_OPTS + TMPL_MAX + CID_MAX + 2)
			PUNT(XC_ERROR);
		COPY_WORDS(&d[at], src, n, 257);
		at = forget(w, at + n);
	}
	if (at > OPTS_OFF + HEAD_OPTS + TMPL_MAX + CID_MAX + 2 + 257)
		PUNT(XC_ERROR);
	d[at] = 255;
	/* Zero the padding up to plen (at most MIN_REPLY - 268 or 3 bytes). */
#pragma unroll
	for (int i = 0; i < 5; i++)
		*(__u64 *)&d[at + 1 + i * 8] = 0;

	/* IPv4 and UDP headers (RFC 2131 §4.1 destinations). */
	__u32 dst = relayed ? giaddr : ciaddr;
	__u32 src = h.daddr == 0xffffffff ? l->server_id : h.daddr;
	struct l34 *r = (struct l34 *)o;
	r->vihl = 0x45;
	r->tos = 0;
	r->tot_len = bpf_htons(L34 + plen);
	/* As the slow path's socket sends its replies (pktio sets DF and TTL
	 * on it), so that a client cannot tell the paths apart by the IP
	 * header either; the ID varies from reply to reply on both. */
	r->id = bpf_htons((__u16)++s->ip_id);
	r->frag_off = bpf_htons(IP_DF);
	r->ttl = REPLY_TTL;
	r->proto = IPPROTO_UDP;
	r->check = 0;
	r->saddr = src;
	r->daddr = dst;
	r->sport = bpf_htons(67);
	r->dport = relayed ? bpf_htons(67) : bpf_htons(68);
	r->ulen = bpf_htons(8 + plen);
	r->ucheck = 0;
	__u64 sum = 0;
	for (int i = 0; i < 10; i++)
		sum += ((__u16 *)o)[i];
	r->check = ~fold(sum) & 0xffff;

	/* UDP checksum: pseudo header, UDP header, the BOOTP fields before
	 * sname, then from the magic cookie on; sname and file are zero.
	 * Summed here 32 bits at a time into 64 (no carry is lost) rather
	 * than with bpf_csum_diff, whose calls cost more than these adds. */
	sum = (__u64)src + dst + bpf_htons(IPPROTO_UDP) + r->ulen;
	sum += r->sport + r->dport + r->ulen;
	plen = forget(w, plen);
	if (plen > PLEN_MAX)
		PUNT(XC_ERROR);
#pragma unroll
	for (int i = 0; i < 44 / 4; i++)
		sum += ((__u32 *)d)[i];
	SUM_WORDS(sum, &d[BOOTP_LEN], plen - BOOTP_LEN, PLEN_MAX - BOOTP_LEN);
	__u16 uc = ~fold(sum) & 0xffff;
	r->ucheck = uc ? uc : 0xffff;

	/* The L2 header, just before out: MACs swapped (the source is ours:
	 * the request's destination, or the interface's own when it was
	 * broadcast), VLAN tags and type as received. One case per tag count:
	 * the verifier wants constant offsets. */
	__u8 *l2 = s->out - ETH_HLEN;
	if (l3 == ETH_HLEN + 8) {
		l2 = s->out - ETH_HLEN - 8;
		*(__u32 *)&s->out[-8] = tag[0];
		*(__u32 *)&s->out[-4] = tag[1];
	} else if (l3 == ETH_HLEN + 4) {
		l2 = s->out - ETH_HLEN - 4;
		*(__u32 *)&s->out[-4] = tag[0];
	} else if (l3 != ETH_HLEN) {
		PUNT(XC_ERROR);
	}
	__builtin_memcpy(l2, eth->h_source, ETH_ALEN);
	if (ifc)
		__builtin_memcpy(l2 + ETH_ALEN, ifc->mac, ETH_ALEN);
	else
		__builtin_memcpy(l2 + ETH_ALEN, eth->h_dest, ETH_ALEN);
	*(__be16 *)&l2[12] = tpid;

	/* Resize the frame; every packet pointer is stale afterwards. Growing
	 * at the tail can fail where the driver left no tailroom (veth hands
	 * XDP the skb's own buffer); then grow at the head instead, which
	 * XDP_PACKET_HEADROOM always allows, and rewrite the L2 header. */
	int delta = (int)(l3 + L34 + plen) - (int)frame;
	if (delta && bpf_xdp_adjust_tail(ctx, delta) < 0 &&
	    (delta < 0 || bpf_xdp_adjust_head(ctx, -delta) < 0)) {
		count(XC_NO_ROOM);
		return XDP_PASS; /* the request is untouched so far */
	}
	/* Write the reply into the frame with plain stores; the frame is now
	 * exactly its length. The L2, IP and UDP headers and the BOOTP fields
	 * before sname lie in scratch in a row from l2: twelve words cover
	 * them (a few bytes more are zeroed next). Then sname and file are
	 * zeroed, and the cookie and the options follow. */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	__u8 *f = data;
	__u8 *pk = f + l3;
	if ((void *)(f + 96) > end || (void *)(pk + L34 + OPTS_OFF + 8) > end)
		goto drop;
#pragma unroll
	for (int i = 0; i < 12; i++)
		((__u64 *)f)[i] = ((__u64 *)l2)[i];
#pragma unroll
	for (int i = 0; i < (BOOTP_LEN - 44) / 8; i++)
		*(__u64 *)&pk[L34 + 44 + i * 8] = 0;
	*(__u32 *)&pk[L34 + BOOTP_LEN] = *(__u32 *)&d[BOOTP_LEN];
	__u8 *po = pk + L34 + OPTS_OFF;
	__u32 on = plen - OPTS_OFF;
	PKT_WORDS(po, d + OPTS_OFF, po, on, PLEN_MAX - OPTS_OFF, end, drop);
	__u32 tail = (plen - 8) & 2047;
	if (tail > PLEN_MAX - 8)
		goto drop;
	__u8 *pt = pk + L34 + tail;
	/* Checked and used as one register: clang would otherwise derive the
	 * store's address afresh, which the verifier has not seen checked. */
	asm volatile("" : "+r"(pt));
	if ((void *)(pt + 8) > end)
		goto drop;
	*(__u64 *)pt = *(__u64 *)&d[tail];
	if (0) {
drop:
		count(XC_ERROR);
		return XDP_DROP; /* resized already: cannot be passed on intact */
	}

	/* Remember what was granted before the reply leaves. */
	__u32 xid = *(__u32 *)&rq[4];
	raise_u64(&g->expiry, exp);
	g->cltt = now;
	g->xid = xid;
	g->last_giaddr = giaddr;
	__u32 cpu = bpf_get_smp_processor_id();
	struct xdhcp_evhead *eh = bpf_map_lookup_elem(&xdhcp_evheads, &cpu);
	__u32 slot = 0;
	if (eh)
		slot = cpu * EV_SLOTS + (eh->head & (EV_SLOTS - 1));
	struct xdhcp_event *ev = eh ? bpf_map_lookup_elem(&xdhcp_evring, &slot) : NULL;
	if (ev) {
		ev->at = now;
		ev->expiry = exp;
		ev->ip = ciaddr;
		ev->xid = xid;
		ev->ifindex = ctx->ingress_ifindex;
		ev->giaddr = giaddr;
		ev->vlan[0] = vlan[0];
		ev->vlan[1] = vlan[1];
		ev->hlen = hlen;
		*(__u64 *)&ev->chaddr[0] = *(__u64 *)&rq[28]; /* a word at a time, not byte by byte */
		*(__u64 *)&ev->chaddr[8] = *(__u64 *)&rq[36];
		/* One writer per ring: XDP does not nest on a CPU (NAPI's
		 * softirq, or generic XDP with bottom halves off).
		 * Publish the head with an exchange, not a store: the JITs
		 * make BPF_XCHG a full barrier (xchg on x86, swpal on arm64),
		 * so a reader that sees the new head sees the whole event.
		 * The compiler barrier keeps clang from sinking the stores. */
		asm volatile("" ::: "memory");
		__sync_lock_test_and_set(&eh->head, eh->head + 1);
	} else {
		count(XC_EVENTS_LOST); /* a ring map smaller than the CPUs: a loader bug */
	}

	count(XC_ANSWERED);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
