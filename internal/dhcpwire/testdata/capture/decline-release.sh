#!/bin/bash
# Captures dhclient (DORA, renew, release), dhcpcd (DORA, release)
# and a dhcpcd DECLINE against xdhcpd, in namespaces of our own.
set -u
D=${D:-/tmp/cap} # work directory; $D/xdhcpd is the daemon (go build -o $D/xdhcpd ./cmd/xdhcpd)
S=cap15s
cleanup() {
  [ -n "${TD:-}" ] && kill $TD 2>/dev/null
  [ -n "${XD:-}" ] && kill $XD 2>/dev/null
  [ -n "${DH:-}" ] && kill $DH 2>/dev/null
  ip netns exec cap15c2 dhcpcd -4 -x dc15b >/dev/null 2>&1
  ip netns exec cap15c3 dhcpcd -4 -x dd15c >/dev/null 2>&1
  rm -f /var/lib/dhcpcd/dc15b.lease /var/lib/dhcpcd/dd15c.lease
  sleep 1
  for n in $S cap15c1 cap15c2 cap15c3 cap15q; do ip netns del $n 2>/dev/null; done
}
trap cleanup EXIT
rm -rf $D/state $D/*.pcap $D/*.log $D/dh.leases
ip netns add $S
ip -n $S link set lo up
ip -n $S link add br0 type bridge
ip -n $S addr add 10.77.0.1/24 dev br0
ip -n $S link set br0 up
i=0
client() { # ns ifname mac
  i=$((i+1))
  ip netns add $1
  ip -n $1 link set lo up
  ip link add cp15$i netns $S type veth peer name $2 netns $1
  ip -n $S link set cp15$i master br0 up
  ip -n $1 link set $2 address $3
  ip -n $1 link set $2 up
}
cat > $D/xdhcpd.yaml <<CFG
server:
  interfaces: [br0]
  state-dir: $D/state
  control-socket: $D/ctl.sock
  metrics-listen: ""
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.149]
    lease-time: 20s
    options:
      routers: [10.77.0.1]
      dns-servers: [10.77.0.53]
      domain-name: example.net
CFG
ip netns exec $S tcpdump -i br0 -n -U -w $D/cap.pcap 'udp port 67 or udp port 68' 2>$D/tcpdump.log &
TD=$!
sleep 1
ip netns exec $S $D/xdhcpd --config $D/xdhcpd.yaml >$D/xdhcpd.log 2>&1 &
XD=$!
sleep 1

# 1. dhcpcd DECLINE: a squatter holds the first pool address.
client cap15q sq15 02:00:00:00:15:99
ip -n cap15q addr add 10.77.0.100/24 dev sq15
client cap15c3 dd15c 02:00:00:00:15:03
echo "== dhcpcd decline"; ip netns exec cap15c3 dhcpcd -4 -1 -t 40 -f /dev/null dd15c 2>&1 | tail -5
ip netns exec cap15c3 dhcpcd -4 -x dd15c >/dev/null 2>&1

# 2. dhcpcd DORA and RELEASE (DUID client-id as Debian's dhcpcd.conf).
client cap15c2 dc15b 02:00:00:00:15:02
printf 'duid\nipv4only\nnoipv4ll\noption domain_name_servers, domain_name, routers\n' > $D/dhcpcd.conf
echo "== dhcpcd"; ip netns exec cap15c2 dhcpcd -4 -w -t 20 -f $D/dhcpcd.conf dc15b 2>&1 | tail -3
sleep 1
echo "== dhcpcd -k"; ip netns exec cap15c2 dhcpcd -4 -k dc15b 2>&1 | tail -3
sleep 1

# 3. dhclient DORA, renew at T1 (10 s), rebind at T2 (17.5 s, unicast
# blocked), release.
client cap15c1 dh15 02:00:00:00:15:01
echo "== dhclient"
ip netns exec cap15c1 dhclient -4 -d -v -pf $D/dh.pid -lf $D/dh.leases dh15 >$D/dhclient.log 2>&1 &
DH=$!
for k in $(seq 60); do grep -q "bound to" $D/dhclient.log && break; sleep 0.5; done
sleep 12   # renewal at T1
ip -n cap15c1 neigh replace 10.77.0.1 lladdr 02:de:ad:00:00:01 dev dh15 nud permanent
for k in $(seq 80); do [ "$(grep -c 'bound to' $D/dhclient.log)" -ge 3 ] && break; sleep 0.5; done
kill $DH; wait $DH 2>/dev/null; DH=
ip -n cap15c1 neigh del 10.77.0.1 dev dh15
echo "== dhclient -r"; ip netns exec cap15c1 dhclient -4 -r -pf $D/dh.pid -lf $D/dh.leases dh15 2>&1 | tail -3
sleep 1
grep -E "DHCP|bound" $D/dhclient.log
