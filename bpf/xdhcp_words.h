/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Word copies, sums and checksums for xdp_dhcp.c. Each is shaped for the
 * verifier as much as for speed: loops unrolled without break, so that a
 * failed test decides every later one and the verifier walks a line, not
 * a tree; masks from a table, not computed.
 */
#ifndef XDHCP_WORDS_H
#define XDHCP_WORDS_H

#include <linux/bpf.h>

/* fold folds a 64-bit sum of 16- or 32-bit words to 16 bits, ones'
 * complement (RFC 1071), for the IP and UDP checksums. */
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

#endif
