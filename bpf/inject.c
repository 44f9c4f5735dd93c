//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * inject is xdhcp-bench's kernel-side renewal generator, not part of the
 * server. On a veth rig a socket sender pays a system call, a socket
 * buffer and the whole receive path per renewal, and tops out far below
 * what XDP answers. So:
 *
 *   xdhcp_inject runs under BPF_PROG_TEST_RUN in live-frame mode on the
 *   rig's client veth. Each run turns the frame into the next client's
 *   prebuilt renewal and returns XDP_TX, which the kernel sends out of the
 *   veth to the server: no socket, no skb, no copy from user space. It
 *   paces itself: a run before the next renewal is due drops the frame.
 *   (Pacing from user space would need a system call per burst, and each
 *   live-frame call costs a fixed ~20 ms here, so calls must be long.)
 *
 *   xdhcp_tally is attached to the same veth. It checks every DHCP reply
 *   coming back (whichever path of the server sent it) against the client
 *   it names, counts it, and drops it. Everything else passes.
 *
 * Maps (sizes set by the loader from the client count):
 *   inject_frames    array  client index -> prebuilt renewal frame
 *   inject_progress  array  [0] -> struct inject_state (one sending thread)
 *   inject_cfg       array [0] -> struct inject_config
 *   inject_expected  hash   client address -> struct inject_expect
 *   tally_counts     per-CPU array enum tally -> u64
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "eth.h"

#define FRAME_MAX 512
#define OPTS_SEEN 128 /* reply options looked at; 53, 54 and 51 come early */

struct inject_frame {
	__u32 len;
	__u8 data[FRAME_MAX];
};

struct inject_config {
	__u32 clients;
	__u32 min_lease;  /* seconds; an ACK granting less is wrong */
	__u32 max_lease;
	__u32 reflected;  /* accept the reflector's echo as an answer (selftest) */
	__u32 mark;       /* first byte of every injected xid */
};

/* The sender's progress; the daemon sets the times at each phase. */
struct inject_state {
	__u64 due_ns;  /* CLOCK_MONOTONIC of the next renewal */
	__u64 gap_ns;  /* between bursts; 0: every run sends */
	__u64 stop_ns; /* runs from here on send nothing */
	__u64 last_ns; /* of the last burst begun; 0: none yet this phase */
	__u64 sent;
	__u32 next;    /* client index */
	__u32 burst;   /* renewals a burst sends, one a run */
	__u32 left;    /* of the current burst */
	__u32 pad;
};


/* What the answer to a client's renewal must carry (network order). */
struct inject_expect {
	__u32 xid;
	__u32 server_id;
};

enum tally {
	TALLY_ACK,   /* a valid DHCPACK */
	TALLY_WRONG, /* a reply for one of our clients that fails a check */
	TALLY_NAK,
	TALLY_OTHER, /* DHCP replies not for our clients: passed */
	TALLY_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inject_frame);
} inject_frames SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inject_state);
} inject_progress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inject_config);
} inject_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inject_expect);
} inject_expected SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TALLY_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tally_counts SEC(".maps");

/* Referenced so that bpf2go -type finds them in BTF. */
const enum tally *unused_tally __attribute__((unused));
const struct inject_frame *unused_frame __attribute__((unused));
const struct inject_state *unused_state __attribute__((unused));

SEC("xdp")
int xdhcp_inject(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct inject_config *cfg = bpf_map_lookup_elem(&inject_cfg, &zero);
	struct inject_state *st = bpf_map_lookup_elem(&inject_progress, &zero);
	if (!cfg || !st || !cfg->clients)
		return XDP_ABORTED;
	__u64 now = bpf_ktime_get_ns();
	if (now >= st->stop_ns)
		return XDP_DROP;
	if (st->gap_ns && !st->left) {
		/* Renewals leave in small bursts, as a NIC's interrupt
		 * moderation would deliver them: one at a time, every send
		 * pays the veth's and the server's per-batch work alone.
		 * Behind (after the pause between two calls), catch up at
		 * twice the rate rather than in one long burst.
		 * last_ns 0 is "no burst yet", not a time: CLOCK_MONOTONIC
		 * counts from boot, so treating 0 as long ago would hold
		 * the first burst back on a machine up for less than
		 * gap_ns / 2. The difference, not last_ns + gap_ns / 2,
		 * so that nothing wraps. */
		if (now < st->due_ns)
			return XDP_DROP;
		if (st->last_ns && now - st->last_ns < st->gap_ns / 2)
			return XDP_DROP;
		st->due_ns += st->gap_ns;
		st->last_ns = now;
		st->left = st->burst;
	}
	if (st->left)
		st->left--;
	__u32 i = st->next;
	if (i >= cfg->clients)
		i = 0;
	st->next = i + 1;
	struct inject_frame *f = bpf_map_lookup_elem(&inject_frames, &i);
	if (!f)
		return XDP_ABORTED;
	/* 64-bit, so that the register checked is the one passed. */
	__u64 len = f->len;
	if (len < ETH_HLEN || len > FRAME_MAX)
		return XDP_ABORTED;
	int delta = (int)len - (int)(ctx->data_end - ctx->data);
	if (delta && bpf_xdp_adjust_tail(ctx, delta) < 0)
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, f->data, len) < 0)
		return XDP_ABORTED;
	st->sent++;
	return XDP_TX;
}

static __always_inline void tally(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&tally_counts, &c);
	if (v)
		*v += 1;
}

/* What the tally's option walk found. */
struct walk {
	__u8 o[OPTS_SEEN];
	__u32 p, n, sid, lt;
	__u8 mt;
};

static __always_inline __u32 get32(const __u8 *o, __u32 at)
{
	return (__u32)o[at & (OPTS_SEEN - 1)] | (__u32)o[(at + 1) & (OPTS_SEEN - 1)] << 8 |
	       (__u32)o[(at + 2) & (OPTS_SEEN - 1)] << 16 | (__u32)o[(at + 3) & (OPTS_SEEN - 1)] << 24;
}

/* walk_option is bpf_loop's callback, one option a call: the verifier
 * checks it once, where a loop in line is explored option by option. */
static long walk_option(__u32 i, struct walk *w)
{
	__u32 p = w->p;
	if (p + 1 >= w->n)
		return 1;
	__u8 c = w->o[p & (OPTS_SEEN - 1)];
	if (c == 255)
		return 1;
	if (c == 0) {
		w->p = p + 1;
		return 0;
	}
	__u8 l = w->o[(p + 1) & (OPTS_SEEN - 1)];
	if (c == 53 && l == 1)
		w->mt = w->o[(p + 2) & (OPTS_SEEN - 1)];
	else if (c == 54 && l == 4)
		w->sid = get32(w->o, p + 2);
	else if (c == 51 && l == 4)
		w->lt = bpf_ntohl(get32(w->o, p + 2));
	w->p = p + 2 + l;
	return 0;
}

SEC("xdp")
int xdhcp_tally(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__be16 proto;
	__u32 tag[2];
	int l3 = parse_eth(data, end, &proto, tag);
	if (l3 < 0)
		return XDP_PASS;
	if (proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	__u8 *ip = data + l3;
	__u8 *b = ip + 28; /* IPv4 without options, UDP */
	if ((void *)(b + 240) > end || ip[0] != 0x45 || ip[9] != IPPROTO_UDP)
		return XDP_PASS;
	__be16 sport = *(__be16 *)&ip[20], dport = *(__be16 *)&ip[22];
	if (sport != bpf_htons(67) || (dport != bpf_htons(68) && dport != bpf_htons(67)) || b[0] != 2)
		return XDP_PASS;
	__u32 xid = *(__u32 *)&b[4], yiaddr = *(__u32 *)&b[16];

	__u32 zero = 0;
	struct inject_config *cfg = bpf_map_lookup_elem(&inject_cfg, &zero);
	if (!cfg)
		return XDP_PASS;
	struct walk w = {};
	__u32 at = l3 + 28 + 240;
	__u64 n = (__u64)(end - data) - at;
	if (n > OPTS_SEEN)
		n = OPTS_SEEN;
	if (n > 0 && bpf_xdp_load_bytes(ctx, at, w.o, n) < 0)
		return XDP_PASS;
	w.n = n;
	bpf_loop(OPTS_SEEN / 2, walk_option, &w, 0);
	__u8 mt = w.mt;
	__u32 sid = w.sid, lt = w.lt;

	struct inject_expect *e = bpf_map_lookup_elem(&inject_expected, &yiaddr);
	if (mt == 6 && b[4] == cfg->mark) {
		/* A NAK carries no address; our xid is enough. */
		tally(TALLY_NAK);
		return XDP_DROP;
	}
	if (!e) {
		tally(TALLY_OTHER);
		return XDP_PASS;
	}
	if (cfg->reflected && xid == e->xid) {
		/* The reflector echoes the request's options. */
		tally(TALLY_ACK);
		return XDP_DROP;
	}
	if (mt != 5 || xid != e->xid || sid != e->server_id || lt < cfg->min_lease || lt > cfg->max_lease)
		tally(TALLY_WRONG);
	else
		tally(TALLY_ACK);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
