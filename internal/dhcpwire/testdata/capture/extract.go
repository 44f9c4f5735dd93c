// extract lists the DHCP payloads in a pcap (Ethernet, IPv4, UDP, as
// tcpdump -i br0 -w writes) and, given -out DIR and arguments N=name after
// the file, writes payload N as a go test fuzz v1 seed called name:
//
//	go run extract.go -out ../fuzz/FuzzParse /tmp/cap/cap.pcap 5=dhcpcd_decline
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	out := flag.String("out", "", "directory for seeds")
	flag.Parse()
	b, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		panic(err)
	}
	if binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		panic("want a little-endian microsecond pcap of Ethernet")
	}
	picks := map[int]string{}
	for _, a := range flag.Args()[1:] {
		n, name, _ := strings.Cut(a, "=")
		i, _ := strconv.Atoi(n)
		picks[i] = name
	}
	off, i := 24, 0
	for off+16 <= len(b) {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		frame := b[off+16 : off+16+incl]
		off += 16 + incl
		if binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			continue
		}
		ip := frame[14:]
		ihl := int(ip[0]&15) * 4
		src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		udp := ip[ihl:]
		p := udp[8:binary.BigEndian.Uint16(udp[4:])]
		i++
		mt := -1
		for j := 240; j+1 < len(p); {
			if p[j] == 0 {
				j++
				continue
			}
			if p[j] == 255 {
				break
			}
			if p[j] == 53 {
				mt = int(p[j+2])
			}
			j += 2 + int(p[j+1])
		}
		fmt.Printf("%2d op=%d type=%2d %s->%s ciaddr=%s chaddr=%s len=%d\n", i, p[0], mt, src, dst,
			netip.AddrFrom4([4]byte(p[12:16])), net.HardwareAddr(p[28:34]), len(p))
		if name, ok := picks[i]; ok && *out != "" {
			s := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", p)
			if err := os.WriteFile(filepath.Join(*out, name), []byte(s), 0o644); err != nil {
				panic(err)
			}
			fmt.Println("   wrote", name)
		}
	}
}
