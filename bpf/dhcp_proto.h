/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Protocol numbers xdp_dhcp.c and steer.c read and write: IPv4 and UDP fields, the
 * BOOTP header (RFC 951, RFC 2131 §2 Figure 1), DHCP options (RFC 2132)
 * and relay agent sub-options (RFC 3046). Offsets are from the start of
 * the DHCP message (the UDP payload).
 */
#ifndef XDHCP_DHCP_PROTO_H
#define XDHCP_DHCP_PROTO_H

/* IPv4 (RFC 791). */
#define IPV4_VERSION 4
#define IPV4_IHL_PLAIN 5        /* header words without options */
#define IPV4_HLEN 20            /* header bytes without options */
#define IP_DF 0x4000            /* Don't Fragment, in frag_off */
#define IP_MF_OFFSET 0x3fff     /* More Fragments and the fragment offset, in frag_off */
#define IPV4_BROADCAST 0xffffffff /* 255.255.255.255, in any byte order */

/* UDP (RFC 768) and the DHCP ports (RFC 2131 §4.1). */
#define UDP_HLEN 8
#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68

/* BOOTP header fields: offsets and sizes. */
#define BOOTP_OP 0
#define BOOTP_HTYPE 1
#define BOOTP_HLEN 2
#define BOOTP_HOPS 3
#define BOOTP_XID 4
#define BOOTP_SECS 8            /* 2 bytes */
#define BOOTP_CIADDR 12
#define BOOTP_YIADDR 16
#define BOOTP_SIADDR 20
#define BOOTP_GIADDR 24
#define BOOTP_CHADDR 28         /* 16 bytes */
#define BOOTP_SNAME 44          /* sname (64 bytes) and file (128 bytes) follow */
#define BOOTP_LEN 236           /* the fixed header, through file */
#define DHCP_COOKIE BOOTP_LEN   /* the magic cookie follows the header */
#define DHCP_OPTIONS 240        /* options follow the cookie */

#define BOOTREQUEST 1
#define BOOTREPLY 2

/* The magic cookie 99.130.83.99 (RFC 2131 §3), as a word in network order. */
#define DHCP_MAGIC 0x63825363

/* DHCP options (RFC 2132 unless noted) and their fixed lengths. */
#define OPT_PAD 0
#define OPT_REQUESTED_IP 50
#define OPT_LEASE_TIME 51       /* 4 bytes */
#define OPT_OVERLOAD 52
#define OPT_MSG_TYPE 53         /* 1 byte */
#define OPT_SERVER_ID 54        /* 4 bytes */
#define OPT_MAX_MSG_SIZE 57     /* 2 bytes */
#define OPT_T1 58               /* 4 bytes */
#define OPT_T2 59               /* 4 bytes */
#define OPT_CLIENT_ID 61
#define OPT_RELAY_INFO 82       /* RFC 3046 */
#define OPT_SUBNET_SELECTION 118 /* RFC 3011 */
#define OPT_END 255

/* The smallest option 57 a client may send (RFC 2132 §9.10). */
#define DHCP_MIN_MAX_MSG 576

/* DHCP message types, option 53's value. */
#define DHCPDISCOVER 1
#define DHCPREQUEST 3
#define DHCPDECLINE 4
#define DHCPACK 5
#define DHCPRELEASE 7
#define DHCPLEASEQUERY 10       /* RFC 4388 */

/* Relay agent sub-options of a fixed length: 4 bytes each. */
#define RAI_LINK_SELECTION 5    /* RFC 3527 */
#define RAI_SERVER_ID_OVERRIDE 11 /* RFC 5107 */

#endif
