//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_dhcp answers DHCPREQUESTs in RENEWING and REBINDING state from the
 * lease map, building the DHCPACK in place and sending it with XDP_TX.
 * Everything it does not fully understand is passed up unchanged to the
 * slow path (docs/ARCHITECTURE.md invariant 5). The slow path owns every
 * policy: it fills the maps (xdhcp_maps.h) and folds the events back into
 * bbolt.
 *
 * xdp_dhcp() is a sequence of stages, each __always_inline and each
 * returning NEXT or a verdict: parse (Ethernet to UDP port 67), copy (the
 * request into scratch), check_request (a renewal this program
 * understands), match_lease (the lease, its grant, the client and where it
 * is), grant (how long), build_reply, write_reply (into the resized
 * frame) and report (the grant and the event, before the reply leaves).
 * Protocol numbers are named in dhcp_proto.h, word copies and checksums
 * live in xdhcp_words.h.
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

#include "dhcp_proto.h"
#include "eth.h"
#include "xdhcp_maps.h"
#include "xdhcp_words.h"

/* Referenced so that bpf2go -type finds them in BTF. */
const enum xdhcp_counter *unused_counter __attribute__((unused));
const struct xdhcp_event *unused_event __attribute__((unused));
const struct xdhcp_evhead *unused_evhead __attribute__((unused));
const enum xdhcp_limit *unused_limit __attribute__((unused));
const enum xdhcp_lease_flag *unused_lease_flag __attribute__((unused));
const enum xdhcp_cfg_flag *unused_cfg_flag __attribute__((unused));
const enum xdp_action *unused_xdp_action __attribute__((unused)); /* verdicts, for Go's tests and rig */

/* The IPv4 header without options and the UDP header, as one struct. */
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

/* A stage's verdict when the next stage is to run. */
#define NEXT -1

#define NSEC_PER_SEC 1000000000ULL
#define ETH_GROUP_BIT 1 /* in the first byte of a MAC address: broadcast or multicast */

/* What the stages learn about a request, in the order they learn it: a
 * local of xdp_dhcp(), which the inlined stages share. It lives on the
 * stack, so the widths of its fields decide what the verifier still knows
 * of them after a spill, and with it how many paths it can prune: those
 * below were chosen by the processed-instruction count (a 32-bit l3 was
 * refused outright; 64-bit option offsets and lengths, and no relayed
 * flag, each cut the count by a tenth or more; a 64-bit plen or T1/T2
 * raised it by half). */
struct req {
	struct xdp_md *ctx;
	/* parse */
	struct l34 h;          /* a copy: packet pointers do not survive the resize */
	__u64 l3;              /* where the IP header starts: 64 bits, so that the
	                        * verifier keeps its value across a spill */
	__u32 frame;           /* the frame's length as received */
	__u32 tag[2];          /* VLAN tags as received; 0: none */
	__u16 vlan[2];
	__be16 tpid;           /* the outer EtherType as received, for the reply */
	const struct xdhcp_settings *cfg;
	struct scratch *s;
	__u64 mono_ns;         /* coarse CLOCK_MONOTONIC */
	/* copy_request */
	__u32 dlen;            /* DHCP message length */
	struct ethhdr *eth;    /* the frame's L2 header, re-derived after the copy */
	const __u8 *chaddr;    /* the rate limiter's key, once known */
	/* check_request */
	__u32 ciaddr, giaddr;  /* as in the request, network order */
	__u64 o61, o82, maxsz; /* from the option walk */
	__u64 l61, l82;
	/* match_lease */
	struct xdhcp_lease *l;
	struct xdhcp_grant *g;
	__u64 now;             /* unix seconds */
	/* grant */
	__u64 exp;             /* the expiry granted */
	__u32 grant, t1, t2;   /* seconds, as options 51, 58, 59 carry them */
	/* build_reply */
	__u32 plen;            /* the reply's DHCP message length */
	__u8 *l2;              /* the reply's first byte in scratch */
};

static __always_inline void count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&xdhcp_counters, &c);
	if (v)
		*v += 1;
}

/* punt counts why a request is passed up and passes it, unless its
 * client's token bucket is empty: then it is dropped (invariant 7). */
static __always_inline int punt(const struct req *r, __u32 why)
{
	const struct xdhcp_settings *cfg = r->cfg;
	count(why);
	if (!cfg || !cfg->punt_rate || !r->chaddr)
		return XDP_PASS;
	__u64 key = 0;
	__builtin_memcpy(&key, r->chaddr, ETH_ALEN);
	__u64 cap = (__u64)cfg->punt_burst * 1000;
	if (cap < 1000)
		cap = 1000;
	struct bucket *b = bpf_map_lookup_elem(&xdhcp_punts, &key);
	if (!b) {
		struct bucket nb = { .at_ns = r->mono_ns, .millitokens = cap - 1000 };
		bpf_map_update_elem(&xdhcp_punts, &key, &nb, BPF_ANY);
		return XDP_PASS;
	}
	__u64 el = r->mono_ns - b->at_ns;
	if (el > 100000000000ULL) /* 100 s refills any sane bucket; keeps the product small */
		el = 100000000000ULL;
	__u64 t = b->millitokens + el * cfg->punt_rate / 1000000;
	if (t > cap)
		t = cap;
	b->at_ns = r->mono_ns;
	if (t < 1000) {
		b->millitokens = t;
		count(XC_RATE_LIMITED);
		return XDP_DROP;
	}
	b->millitokens = t - 1000;
	return XDP_PASS;
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

/* walk_step looks at the option at w->off; returns 1 to stop. */
static __always_inline int walk_step(__u8 *rq, volatile struct walk *w)
{
	__u32 off = w->off, dlen = w->dlen;
	if (off >= dlen)
		return 1; /* ran out before END */
	__u8 code = rq[off & (REQ_MAX - 1)];
	if (code == OPT_PAD) {
		w->off = off + 1;
		return 0;
	}
	if (code == OPT_END) {
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
	case OPT_MSG_TYPE: /* a second 53 after one of value 0 is a second one too */
		if (n != 1 || w->mt || !rq[v])
			w->unsup = 1;
		w->mt = rq[v];
		break;
	case OPT_REQUESTED_IP:
		w->has50 = 1;
		break;
	case OPT_SERVER_ID:
		w->has54 = 1;
		break;
	case OPT_OVERLOAD: /* options continue in sname/file */
	case OPT_SUBNET_SELECTION: /* the slow path echoes it, this program does not */
		w->unsup = 1;
		break;
	case OPT_MAX_MSG_SIZE: /* the slow path drops a 57 not 2 bytes or below 576 as malformed */
		if (n != 2) {
			w->bad = 1;
			return 1;
		} else {
			__u32 m = ((__u32)rq[v] << 8) | rq[(v + 1) & (REQ_MAX - 1)];
			if (m < DHCP_MIN_MAX_MSG) {
				w->bad = 1;
				return 1;
			}
			w->maxsz = m;
		}
		break;
	case OPT_LEASE_TIME: /* requested: the slow path drops one not 4 bytes */
		if (n != 4) {
			w->bad = 1;
			return 1;
		}
		break;
	case OPT_CLIENT_ID:
		if (w->o61 || n < 2)
			w->unsup = 1;
		w->o61 = off;
		w->l61 = n;
		break;
	case OPT_RELAY_INFO:
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
 *	else:	h = FP_SEED ^ key ^ n  (key: the settings' fp_key)
 *		for each 8 bytes of the body as a little-endian word w,
 *		the last one zero-padded:
 *			h = (h ^ w) * FP_MUL
 *			h ^= h >> 32
 *		h | 1, never 0
 *
 * Not cryptographic: it tells a changed circuit-id or remote-id for a
 * multiply per 8 bytes, without 255 bytes per lease entry. The key, secret
 * to the daemon and this map, keeps a relay that chooses its bytes from
 * making two bodies collide: each word's mix depends on it. Taken at the
 * end of walk_options, so it is verified once with the walk and costs no
 * call of its own.
 */
#define FP_SEED 0x9e3779b97f4a7c15ULL
#define FP_MUL 0xff51afd7ed558ccdULL

static __always_inline __u64 relay_fp(struct scratch *s, __u32 off, __u32 n, __u64 key)
{
	if (!s || !n)
		return 0;
	/* Words past the body (at most 7 bytes) stay inside the scratch
	 * value and are masked off. */
	__u8 *b = &s->req[off & (REQ_MAX - 1)];
	__u64 h = FP_SEED ^ key ^ n;
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
		if ((c == RAI_LINK_SELECTION || c == RAI_SERVER_ID_OVERRIDE) && m != 4)
			return 0;
		i += 2 + m;
	}
	return 1;
}

/* walk_options walks the request's options into s->w. A global function,
 * so that the verifier checks it once on its own: inline, each way out of
 * the loop would be followed through the rest of the program. A plain
 * call, where bpf_loop made one indirect call per few options. */
__noinline int walk_options(struct scratch *s, __u64 fp_key)
{
	if (!s)
		return 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < MAX_OPTS; i++)
		if (walk_step(s->req, &s->w))
			break;
	if (s->w.o82 && !relay_ok(s, s->w.o82 + 2, s->w.l82))
		s->w.bad = 1;
	s->w.fp82 = s->w.o82 ? relay_fp(s, s->w.o82 + 2, s->w.l82, fp_key) : 0;
	return 0;
}

/*
 * parse: an IPv4 datagram without options to UDP port 67, over Ethernet
 * with up to two VLAN tags. Anything else is not ours and passes, counted
 * as not_dhcp once it is IPv4 UDP. Then the settings, the scratch buffer
 * and the clock, which every later stage uses.
 */
static __always_inline int parse(struct req *r)
{
	void *data = (void *)(long)r->ctx->data;
	void *end = (void *)(long)r->ctx->data_end;
	struct ethhdr *eth = data;
	__be16 proto;
	int hl = parse_eth(data, end, &proto, r->tag);
	if (hl < 0)
		return XDP_PASS;
	r->l3 = hl;
	r->tpid = eth->h_proto;
	r->vlan[0] = vlan_id(r->tag[0]);
	r->vlan[1] = vlan_id(r->tag[1]);
	if (proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;

	struct l34 *hp = data + r->l3;
	if ((void *)(hp + 1) > end)
		return XDP_PASS;
	r->h = *hp;
	if ((r->h.vihl >> 4) != IPV4_VERSION || r->h.proto != IPPROTO_UDP)
		return XDP_PASS;
	if ((r->h.vihl & 0xf) != IPV4_IHL_PLAIN) {
		/* UDP port unknown without parsing the options: not ours to judge. */
		count(XC_NOT_DHCP);
		return XDP_PASS;
	}
	if (r->h.dport != bpf_htons(DHCP_SERVER_PORT)) {
		count(XC_NOT_DHCP);
		return XDP_PASS;
	}
	r->frame = (__u32)(end - data);

	__u32 zero = 0;
	r->cfg = bpf_map_lookup_elem(&xdhcp_config, &zero);
	r->s = bpf_map_lookup_elem(&xdhcp_scratch, &zero);
	if (!r->cfg || !r->s)
		return XDP_PASS;
	/* The coarse clock (a tick behind at most) is enough for times kept
	 * in seconds and for the punt buckets, and costs a fraction. */
	r->mono_ns = bpf_ktime_get_coarse_ns();
	return NEXT;
}

/*
 * copy_request: check the lengths and copy the DHCP message into scratch
 * with plain loads (a helper call costs more than the copy): the BOOTP
 * fields before sname, the cookie, and the options, skipping sname and
 * file. Every word read lies inside [0, dlen), the last one overlapping
 * its neighbour, so nothing past the datagram is read; each carries the
 * bounds check the verifier wants for a variable offset, and it never
 * fails once dlen fits.
 */
static __always_inline int copy_request(struct req *r)
{
	void *data = (void *)(long)r->ctx->data;
	void *end = (void *)(long)r->ctx->data_end;
	if (r->h.frag_off & bpf_htons(IP_MF_OFFSET))
		return punt(r, XC_UNSUPPORTED);
	__u32 ip_len = bpf_ntohs(r->h.tot_len);
	__u32 udp_len = bpf_ntohs(r->h.ulen);
	if (ip_len < L34 || r->l3 + ip_len > r->frame || udp_len != ip_len - IPV4_HLEN)
		return punt(r, XC_MALFORMED);
	__u32 dlen = udp_len - UDP_HLEN;
	if (dlen < DHCP_OPTIONS + 1)
		return punt(r, XC_MALFORMED);
	if (dlen > REQ_MAX)
		return punt(r, XC_UNSUPPORTED);
	r->dlen = dlen;

	__u8 *dh = data + r->l3 + L34;
	if ((void *)(dh + DHCP_OPTIONS + 1) > end)
		return punt(r, XC_MALFORMED);
	__u8 *rq = r->s->req;
	/* Six words cover the fields before sname (BOOTP_SNAME bytes); one
	 * word ending at the cookie's end covers the cookie. */
#pragma unroll
	for (int i = 0; i < 6; i++)
		((__u64 *)rq)[i] = *(__u64 *)&dh[i * 8];
	*(__u64 *)&rq[DHCP_OPTIONS - 8] = *(__u64 *)&dh[DHCP_OPTIONS - 8];
	PKT_WORDS(dh + DHCP_OPTIONS, dh + DHCP_OPTIONS, rq + DHCP_OPTIONS, dlen - DHCP_OPTIONS, REQ_MAX - DHCP_OPTIONS, end, malformed);
	__u32 last = (dlen - 8) & (REQ_MAX - 1);
	__u8 *pl = dh + last;
	asm volatile("" : "+r"(pl)); /* see write_reply's pt */
	if ((void *)(pl + 8) > end)
		goto malformed;
	*(__u64 *)&rq[last] = *(__u64 *)pl;

	/* Each word's check widened the range the verifier knows for the
	 * frame's pointers, one state per length; fresh pointers with one
	 * small range let the rest of the program be verified once. */
	data = (void *)(long)r->ctx->data;
	end = (void *)(long)r->ctx->data_end;
	r->eth = data;
	if ((void *)(r->eth + 1) > end)
		return punt(r, XC_ERROR);
	return NEXT;

malformed: /* the frame ended before the datagram did */
	return punt(r, XC_MALFORMED);
}

/*
 * check_request: a well-formed BOOTREQUEST whose options this program
 * understands, a DHCPREQUEST in RENEWING or REBINDING state (ciaddr set,
 * no requested address, no server identifier: RFC 2131 §4.3.2), while
 * the daemon lets the fast path answer.
 */
static __always_inline int check_request(struct req *r)
{
	__u8 *rq = r->s->req;
	if (rq[BOOTP_OP] != BOOTREQUEST || rq[BOOTP_HLEN] > CHADDR_MAX ||
	    *(__u32 *)&rq[DHCP_COOKIE] != bpf_htonl(DHCP_MAGIC))
		return punt(r, XC_MALFORMED);
	r->chaddr = &rq[BOOTP_CHADDR];

	/* Walk the options in a function of its own: it is verified once,
	 * where an unrolled walk multiplies the verifier's states by every
	 * combination of options seen. */
	struct walk *w = &r->s->w;
	__builtin_memset(w, 0, sizeof(*w));
	w->off = DHCP_OPTIONS;
	w->dlen = r->dlen;
	w->maxsz = DEFAULT_MAX_MSG;
	walk_options(r->s, r->cfg->fp_key);
	r->o61 = w->o61;
	r->o82 = w->o82;
	r->maxsz = w->maxsz;
	r->l61 = w->l61;
	r->l82 = w->l82;
	__u8 mt = w->mt;
	if (w->bad)
		return punt(r, XC_MALFORMED);
	if (!w->done || w->unsup)
		return punt(r, XC_UNSUPPORTED);

	r->ciaddr = *(__u32 *)&rq[BOOTP_CIADDR];
	r->giaddr = *(__u32 *)&rq[BOOTP_GIADDR];
	if (mt != DHCPREQUEST || w->has50 || w->has54 || !r->ciaddr)
		return punt(r, XC_NOT_RENEWAL);
	if (!(r->cfg->flags & XDHCP_CFG_ANSWER))
		return punt(r, XC_DISABLED);
	return NEXT;
}

/*
 * match_lease: the lease for ciaddr and its grant, not expired, held by
 * this client (invariant 5: hardware address, and client identifier in
 * both or neither), renewed where it was granted, and servable here.
 */
static __always_inline int match_lease(struct req *r)
{
	struct scratch *s = r->s;
	__u8 *rq = s->req;
	struct xdhcp_lease *l = bpf_map_lookup_elem(&xdhcp_leases, &r->ciaddr);
	/* The daemon's update of an entry links a new element and unlinks
	 * the old one, whose memory the kernel may hand at once to another
	 * update; a lookup walking the bucket at that instant can miss the
	 * key. One more lookup finds the new element: without it a
	 * republish under load punted about one renewal in 10^4
	 * (TestGrantsSurviveRepublish). A miss still only punts. */
	if (!l)
		l = bpf_map_lookup_elem(&xdhcp_leases, &r->ciaddr);
	if (!l)
		return punt(r, XC_NO_LEASE);
	r->l = l;
	/* Unix seconds. BPF has no multiply-high, so dividing by 10^9 is a
	 * real division; it is done once a second per CPU, and otherwise
	 * the second found last time is used while mono_ns stays inside it
	 * under the same clock offset. */
	__s64 off = r->cfg->wall_offset_ns;
	__u64 mono_ns = r->mono_ns;
	__u64 now = s->sec;
	if (mono_ns < s->sec_start || mono_ns >= s->sec_start + NSEC_PER_SEC || off != s->sec_offset || !now) {
		now = (mono_ns + off) / NSEC_PER_SEC;
		s->sec = now;
		s->sec_start = now * NSEC_PER_SEC - off;
		s->sec_offset = off;
	}
	r->now = now;

	/* The binding's grant: the lease ends at the later of its expiry and
	 * the grant's, which the renewal raises before its reply leaves. A
	 * slot whose gen is not the lease's belongs to no binding of this
	 * entry (the daemon writes the slot before the entry that names it,
	 * so it is never seen in operation): nothing could record the grant. */
	struct xdhcp_grant *g = bpf_map_lookup_elem(&xdhcp_grants, &l->grant_slot);
	if (!g || g->gen != l->gen)
		return punt(r, XC_ERROR);
	r->g = g;
	__u64 expiry = l->expiry;
	if (g->expiry > expiry)
		expiry = g->expiry;
	if (now >= expiry)
		return punt(r, XC_EXPIRED);

	/* Identity: hardware address, and client identifier present in both or neither. */
	__u8 hlen = rq[BOOTP_HLEN];
	if (rq[BOOTP_HTYPE] != l->htype || hlen != l->hlen)
		return punt(r, XC_IDENTITY);
	/* Compared a word at a time under a mask of the first hlen bytes:
	 * a byte loop multiplies the verifier's states by every hlen. */
	if (((*(__u64 *)&rq[BOOTP_CHADDR] ^ *(__u64 *)&l->chaddr[0]) & lowmask(hlen)) ||
	    ((*(__u64 *)&rq[BOOTP_CHADDR + 8] ^ *(__u64 *)&l->chaddr[8]) & lowmask((__s64)hlen - 8)))
		return punt(r, XC_IDENTITY);
	__u8 l61 = r->l61;
	if (l61 != l->cid_len || l61 > CID_MAX)
		return punt(r, XC_IDENTITY);
	if (l61) {
		/* The entry's identifier is zero-padded; the request's is
		 * followed by other options, masked off. Reading up to 32
		 * bytes past the request's end stays inside the scratch value. */
		__u8 *c = &rq[(r->o61 + 2) & (REQ_MAX - 1)];
		__u64 *lc = (__u64 *)l->cid;
		if (((*(__u64 *)&c[0] ^ lc[0]) & lowmask(l61)) |
		    ((*(__u64 *)&c[8] ^ lc[1]) & lowmask((__s64)l61 - 8)) |
		    ((*(__u64 *)&c[16] ^ lc[2]) & lowmask((__s64)l61 - 16)) |
		    ((*(__u64 *)&c[24] ^ lc[3]) & lowmask((__s64)l61 - 24)))
			return punt(r, XC_IDENTITY);
	}

	/* Where: the relay it was granted through or the client itself past
	 * the relay, by unicast (a broadcast that reaches the server
	 * unrelayed comes from one of its own links: the client moved, and
	 * the slow path judges it by the receiving interface); for a direct
	 * lease the same interface and VLAN tags. */
	int relayed = r->giaddr != 0;
	if (l->giaddr) {
		if (!(r->giaddr == l->giaddr || (!relayed && r->h.saddr == r->ciaddr && r->h.daddr != IPV4_BROADCAST)))
			return punt(r, XC_WHERE);
	} else if (relayed || r->ctx->ingress_ifindex != l->ifindex || r->vlan[0] != l->vlan[0] || r->vlan[1] != l->vlan[1]) {
		return punt(r, XC_WHERE);
	}
	/* RFC 8357 relay ports and odd clients: slow path. */
	if (relayed ? r->h.sport != bpf_htons(DHCP_SERVER_PORT) : r->h.sport != bpf_htons(DHCP_CLIENT_PORT))
		return punt(r, XC_WHERE);
	if (r->h.daddr != l->server_id && (relayed || r->h.daddr != IPV4_BROADCAST))
		return punt(r, XC_WHERE);
	/* Option 82 as last received, which leasequery reports: a relay
	 * that now sends another one for this client (it moved port) goes
	 * to the slow path, which stores it and publishes its fingerprint.
	 * One without 82 (past the relay, or from a relay that adds none)
	 * leaves the stored one, as the slow path does. */
	if (relayed && r->o82 && s->w.fp82 != l->relay_fp)
		return punt(r, XC_RELAY_INFO);
	if (!(l->flags & XDHCP_LEASE_SERVE))
		return punt(r, XC_NOT_SERVING);
	return NEXT;
}

/*
 * grant: min(now + lease time, horizon) (invariant 2), never less than
 * min-grant; T1 and T2 scaled down with a shortened grant.
 */
static __always_inline int grant(struct req *r)
{
	const struct xdhcp_lease *l = r->l;
	__u64 now = r->now;
	__u64 exp = now + l->lease_time;
	if (exp > l->horizon)
		exp = l->horizon;
	if (exp < now + r->cfg->min_grant || exp <= now)
		return punt(r, XC_HORIZON);
	__u32 grant = exp - now, t1 = l->t1, t2 = l->t2;
	if (grant < l->lease_time && l->lease_time) {
		t1 = (__u64)t1 * grant / l->lease_time;
		t2 = (__u64)t2 * grant / l->lease_time;
	}
	r->exp = exp;
	r->grant = grant;
	r->t1 = t1;
	r->t2 = t2;
	return NEXT;
}

/*
 * build_reply: the DHCPACK, from the L2 header to the last option, in
 * scratch: options 53, 54, 51, 58, 59, the subnet's template, 61 and 82
 * echoed, END (invariant 3: the slow path's order), padded; then the IP
 * and UDP headers with their checksums, and the L2 header before them.
 */
static __always_inline int build_reply(struct req *r)
{
	struct scratch *s = r->s;
	const struct xdhcp_lease *l = r->l;
	__u8 *rq = s->req;
	struct walk *w = &s->w;
	struct xdhcp_template *t = bpf_map_lookup_elem(&xdhcp_tmpls, &l->tmpl_id);
	if (!t || !t->used)
		return punt(r, XC_ERROR);
	__u32 tlen = t->len;
	if (tlen > TMPL_MAX)
		return punt(r, XC_ERROR);
	__u8 l61 = r->l61;
	__u32 o61 = r->o61, o82 = r->o82;
	__u32 e61 = l61 ? 2 + l61 : 0, e82 = o82 ? 2 + r->l82 : 0;
	__u32 olen = DHCP_OPTIONS + HEAD_OPTS + tlen + e61 + e82 + 1;
	__u32 plen = (olen + REPLY_ALIGN - 1) & ~(REPLY_ALIGN - 1U); /* summed and copied in words */
	if (plen < MIN_REPLY)
		plen = MIN_REPLY;
	if (plen > r->maxsz - L34 || plen > PLEN_MAX)
		return punt(r, XC_TOO_BIG);

	/* Reply source: the address the request was sent to; the server
	 * identifier when it was broadcast. */
	struct ethhdr *eth = r->eth;
	struct xdhcp_iface *ifc = NULL;
	if (eth->h_dest[0] & ETH_GROUP_BIT) {
		__u32 ifindex = r->ctx->ingress_ifindex; /* a map key cannot point into ctx */
		ifc = bpf_map_lookup_elem(&xdhcp_ifaces, &ifindex);
		if (!ifc)
			return punt(r, XC_ERROR);
	}

	/* Build IP + UDP + DHCP in s->out. */
	__u8 *o = s->out;
	__u8 *d = o + L34;
	/* BOOTP header: the fields through chaddr copied, then the ones a
	 * reply sets (RFC 2131 Table 3); sname and file zeroed, not copied. */
#pragma unroll
	for (int i = 0; i < BOOTP_SNAME / 4; i++)
		((__u32 *)d)[i] = ((__u32 *)rq)[i];
	d[BOOTP_OP] = BOOTREPLY;
	d[BOOTP_HOPS] = 0;
	d[BOOTP_SECS] = 0;
	d[BOOTP_SECS + 1] = 0;
	*(__u32 *)&d[BOOTP_YIADDR] = r->ciaddr;
	*(__u32 *)&d[BOOTP_SIADDR] = 0;
	/* sname and file (d[BOOTP_SNAME..BOOTP_LEN)) stay zero: nothing
	 * writes them, and map values start zeroed. The UDP checksum skips
	 * them too. */
	*(__u32 *)&d[DHCP_COOKIE] = *(__u32 *)&rq[DHCP_COOKIE];
	__u8 *p = d + DHCP_OPTIONS;
	p[0] = OPT_MSG_TYPE, p[1] = 1, p[2] = DHCPACK;
	p[3] = OPT_SERVER_ID, p[4] = 4;
	*(__u32 *)&p[5] = l->server_id;
	p[9] = OPT_LEASE_TIME, p[10] = 4;
	put32(&p[11], r->grant);
	p[15] = OPT_T1, p[16] = 4;
	put32(&p[17], r->t1);
	p[21] = OPT_T2, p[22] = 4;
	put32(&p[23], r->t2);
	/* The bytes past len in the last word are zero and get overwritten. */
	COPY_WORDS(&d[DHCP_OPTIONS + HEAD_OPTS], t->data, tlen, TMPL_MAX);
	__u64 at = forget(w, DHCP_OPTIONS + HEAD_OPTS + tlen);
	/* Echo 61 then 82 byte for byte from the request, a word at a time
	 * (the tail past n is overwritten). */
	if (l61) {
		__u32 n = l61 + 2;
		__u8 *src = &rq[o61 & (REQ_MAX - 1)];
		if (at > DHCP_OPTIONS + HEAD_OPTS + TMPL_MAX)
			return punt(r, XC_ERROR);
		COPY_WORDS(&d[at], src, n, CID_MAX + 2);
		at = forget(w, at + n);
	}
	if (o82) {
		__u32 n = r->l82 + 2;
		__u8 *src = &rq[o82 & (REQ_MAX - 1)];
		if (at > DHCP_OPTIONS + HEAD_OPTS + TMPL_MAX + CID_MAX + 2)
			return punt(r, XC_ERROR);
		COPY_WORDS(&d[at], src, n, 255 + 2);
		at = forget(w, at + n);
	}
	if (at > DHCP_OPTIONS + HEAD_OPTS + TMPL_MAX + CID_MAX + 2 + 255 + 2)
		return punt(r, XC_ERROR);
	d[at] = OPT_END;
	/* Zero the padding up to plen (at most MIN_REPLY - 268 or 3 bytes). */
#pragma unroll
	for (int i = 0; i < 5; i++)
		*(__u64 *)&d[at + 1 + i * 8] = 0;

	/* IPv4 and UDP headers (RFC 2131 §4.1 destinations). */
	int relayed = r->giaddr != 0;
	__u32 dst = relayed ? r->giaddr : r->ciaddr;
	__u32 src = r->h.daddr == IPV4_BROADCAST ? l->server_id : r->h.daddr;
	struct l34 *h = (struct l34 *)o;
	h->vihl = (IPV4_VERSION << 4) | IPV4_IHL_PLAIN;
	h->tos = 0;
	h->tot_len = bpf_htons(L34 + plen);
	/* As the slow path's socket sends its replies (pktio sets DF and TTL
	 * on it), so that a client cannot tell the paths apart by the IP
	 * header either; the ID varies from reply to reply on both. */
	h->id = bpf_htons((__u16)++s->ip_id);
	h->frag_off = bpf_htons(IP_DF);
	h->ttl = REPLY_TTL;
	h->proto = IPPROTO_UDP;
	h->check = 0;
	h->saddr = src;
	h->daddr = dst;
	h->sport = bpf_htons(DHCP_SERVER_PORT);
	h->dport = relayed ? bpf_htons(DHCP_SERVER_PORT) : bpf_htons(DHCP_CLIENT_PORT);
	h->ulen = bpf_htons(UDP_HLEN + plen);
	h->ucheck = 0;
	__u64 sum = 0;
	for (int i = 0; i < IPV4_HLEN / 2; i++)
		sum += ((__u16 *)o)[i];
	h->check = ~fold(sum) & 0xffff;

	/* UDP checksum: pseudo header, UDP header, the BOOTP fields before
	 * sname, then from the magic cookie on; sname and file are zero.
	 * Summed here 32 bits at a time into 64 (no carry is lost) rather
	 * than with bpf_csum_diff, whose calls cost more than these adds. */
	sum = (__u64)src + dst + bpf_htons(IPPROTO_UDP) + h->ulen;
	sum += h->sport + h->dport + h->ulen;
	plen = forget(w, plen);
	if (plen > PLEN_MAX)
		return punt(r, XC_ERROR);
#pragma unroll
	for (int i = 0; i < BOOTP_SNAME / 4; i++)
		sum += ((__u32 *)d)[i];
	/* The base in a register of its own: clang otherwise reloaded the
	 * scratch pointer from the stack for every word summed. */
	__u8 *cs = &d[DHCP_COOKIE];
	asm volatile("" : "+r"(cs));
	SUM_WORDS(sum, cs, plen - DHCP_COOKIE, PLEN_MAX - DHCP_COOKIE);
	__u16 uc = ~fold(sum) & 0xffff;
	h->ucheck = uc ? uc : 0xffff;
	r->plen = plen;

	/* The L2 header, just before out: MACs swapped (the source is ours:
	 * the request's destination, or the interface's own when it was
	 * broadcast), VLAN tags and type as received. One case per tag count:
	 * the verifier wants constant offsets. */
	__u8 *l2 = s->out - ETH_HLEN;
	if (r->l3 == ETH_HLEN + 8) {
		l2 = s->out - ETH_HLEN - 8;
		*(__u32 *)&s->out[-8] = r->tag[0];
		*(__u32 *)&s->out[-4] = r->tag[1];
	} else if (r->l3 == ETH_HLEN + 4) {
		l2 = s->out - ETH_HLEN - 4;
		*(__u32 *)&s->out[-4] = r->tag[0];
	} else if (r->l3 != ETH_HLEN) {
		return punt(r, XC_ERROR);
	}
	__builtin_memcpy(l2, eth->h_source, ETH_ALEN);
	if (ifc)
		__builtin_memcpy(l2 + ETH_ALEN, ifc->mac, ETH_ALEN);
	else
		__builtin_memcpy(l2 + ETH_ALEN, eth->h_dest, ETH_ALEN);
	*(__be16 *)&l2[12] = r->tpid;
	r->l2 = l2;
	return NEXT;
}

/*
 * write_reply: resize the frame to the reply and write it there; every
 * packet pointer is stale afterwards. Growing at the tail can fail where
 * the driver left no tailroom (veth hands XDP the skb's own buffer); then
 * grow at the head instead, which XDP_PACKET_HEADROOM always allows, and
 * rewrite the L2 header.
 */
static __always_inline int write_reply(struct req *r)
{
	struct xdp_md *ctx = r->ctx;
	struct scratch *s = r->s;
	__u32 plen = r->plen;
	int delta = (int)(r->l3 + L34 + plen) - (int)r->frame;
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
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *d = s->out + L34;
	__u8 *f = data;
	__u8 *pk = f + r->l3;
	if ((void *)(f + 96) > end || (void *)(pk + L34 + DHCP_OPTIONS + 8) > end)
		goto drop;
#pragma unroll
	for (int i = 0; i < 12; i++)
		((__u64 *)f)[i] = ((__u64 *)r->l2)[i];
#pragma unroll
	for (int i = 0; i < (BOOTP_LEN - BOOTP_SNAME) / 8; i++)
		*(__u64 *)&pk[L34 + BOOTP_SNAME + i * 8] = 0;
	*(__u32 *)&pk[L34 + DHCP_COOKIE] = *(__u32 *)&d[DHCP_COOKIE];
	__u8 *po = pk + L34 + DHCP_OPTIONS;
	__u32 on = plen - DHCP_OPTIONS;
	PKT_WORDS(po, d + DHCP_OPTIONS, po, on, PLEN_MAX - DHCP_OPTIONS, end, drop);
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
	return NEXT;

drop: /* the frame is shorter than it was made: never seen */
	count(XC_ERROR);
	return XDP_DROP; /* resized already: cannot be passed on intact */
}

/*
 * report: remember what was granted before the reply leaves: the grant
 * (the map never forgets one, invariant 9) and the event (invariant 4).
 */
static __always_inline int report(struct req *r)
{
	struct xdhcp_grant *g = r->g;
	__u8 *rq = r->s->req;
	__u32 xid = *(__u32 *)&rq[BOOTP_XID];
	/* Nanoseconds: a renewal answered here in the same second as the
	 * slow path's ACK must still be ordered against it (its xid is what
	 * a FORCERENEW must carry). */
	__u64 at_ns = r->mono_ns + r->cfg->wall_offset_ns;
	raise_u64(&g->expiry, r->exp);
	g->cltt_ns = at_ns;
	g->xid = xid;
	g->last_giaddr = r->giaddr;
	__u32 cpu = bpf_get_smp_processor_id();
	struct xdhcp_evhead *eh = bpf_map_lookup_elem(&xdhcp_evheads, &cpu);
	__u32 slot = 0;
	if (eh)
		slot = cpu * EV_SLOTS + (eh->head & (EV_SLOTS - 1));
	struct xdhcp_event *ev = eh ? bpf_map_lookup_elem(&xdhcp_evring, &slot) : NULL;
	if (ev) {
		ev->at_ns = at_ns;
		ev->expiry = r->exp;
		ev->ip = r->ciaddr;
		ev->xid = xid;
		ev->ifindex = r->ctx->ingress_ifindex;
		ev->giaddr = r->giaddr;
		ev->vlan[0] = r->vlan[0];
		ev->vlan[1] = r->vlan[1];
		ev->hlen = rq[BOOTP_HLEN];
		/* a word at a time, not byte by byte */
		*(__u64 *)&ev->chaddr[0] = *(__u64 *)&rq[BOOTP_CHADDR];
		*(__u64 *)&ev->chaddr[8] = *(__u64 *)&rq[BOOTP_CHADDR + 8];
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

SEC("xdp")
int xdp_dhcp(struct xdp_md *ctx)
{
	/* Not zeroed as a whole: that would be a store per field on every
	 * frame, ours or not. Each stage writes the fields it sets before
	 * any stage reads them; these few are read before they are set. */
	struct req r;
	r.ctx = ctx;
	r.tag[0] = r.tag[1] = 0;
	r.chaddr = NULL;
	int v;
	if ((v = parse(&r)) != NEXT ||
	    (v = copy_request(&r)) != NEXT ||
	    (v = check_request(&r)) != NEXT ||
	    (v = match_lease(&r)) != NEXT ||
	    (v = grant(&r)) != NEXT ||
	    (v = build_reply(&r)) != NEXT ||
	    (v = write_reply(&r)) != NEXT)
		return v;
	return report(&r);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
