#!/bin/bash
# Captures dhclient's REBINDING broadcast (unicast to the server blocked
# at T1) and udhcpc's REBINDING broadcast relayed by dhcrelay -a (the
# client has no route to the server, so its renewal at T1 cannot be sent),
# against xdhcpd, in namespaces of our own. Lease time 60 s: T1 30 s, T2
# 52.5 s.
set -u
D=${D:-/tmp/cap} # work directory; $D/xdhcpd is the daemon (go build -o $D/xdhcpd ./cmd/xdhcpd)
S=cap15s
cleanup() {
  for p in ${PIDS:-}; do kill $p 2>/dev/null; done
  sleep 1
  for n in $S cap15c1 cap15r cap15c4; do ip netns del $n 2>/dev/null; done
}
trap cleanup EXIT
rm -rf $D/state $D/cap.pcap $D/*.log $D/dh.leases $D/dh.pid
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
    lease-time: 60s
    options:
      routers: [10.77.0.1]
  - subnet: 10.78.0.0/16
    pools: [10.78.1.0-10.78.255.254]
    lease-time: 60s
    options:
      routers: [10.78.0.1]
CFG
ip netns exec $S tcpdump -i br0 -n -U -w $D/cap.pcap 'udp port 67 or udp port 68' 2>$D/tcpdump.log &
PIDS="$!"
sleep 1
ip netns exec $S $D/xdhcpd --config $D/xdhcpd.yaml >$D/xdhcpd.log 2>&1 &
PIDS="$PIDS $!"
sleep 1

# The relay: up 10.77.0.2 on the server's bridge, down 10.78.0.1 (r1) to a
# udhcpc client.
client cap15r up15 02:00:00:00:15:a0
ip -n cap15r addr add 10.77.0.2/24 dev up15
ip netns add cap15c4
ip link add r1 netns cap15r type veth peer name uc15 netns cap15c4
ip -n cap15r addr add 10.78.0.1/16 dev r1
ip -n cap15r link set r1 up
ip -n cap15c4 link set lo up
ip -n cap15c4 link set uc15 address 02:00:00:00:15:04
ip -n cap15c4 link set uc15 up
ip -n $S route add 10.78.0.0/16 via 10.77.0.2
ip netns exec cap15r sysctl -qw net.ipv4.ip_forward=1
ip netns exec cap15r dhcrelay -d -4 -a -iu up15 -id r1 10.77.0.1 >$D/dhcrelay.log 2>&1 &
PIDS="$PIDS $!"
sleep 1
ip netns exec cap15c4 udhcpc -f -i uc15 -s /bin/true -x hostname:h6relayed -V h6-relay-capture >$D/udhcpc.log 2>&1 &
PIDS="$PIDS $!"

client cap15c1 dh15 02:00:00:00:15:01
ip netns exec cap15c1 dhclient -4 -d -v -pf $D/dh.pid -lf $D/dh.leases dh15 >$D/dhclient.log 2>&1 &
PIDS="$PIDS $!"
for k in $(seq 60); do grep -q "bound to" $D/dhclient.log && break; sleep 0.5; done
ip -n cap15c1 neigh replace 10.77.0.1 lladdr 02:de:ad:00:00:01 dev dh15 nud permanent
for k in $(seq 160); do [ "$(grep -c 'REQUEST.*to 255.255.255.255' $D/dhclient.log)" -ge 2 ] && break; sleep 0.5; done
sleep 2
for k in $(seq 60); do grep -q "broadcasting renew" $D/udhcpc.log && break; sleep 0.5; done
sleep 2
cat $D/dhclient.log | grep -E "DHCP|bound"; echo ---; cat $D/udhcpc.log
