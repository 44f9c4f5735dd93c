#!/usr/bin/env bash
# xdhcp demo: a server namespace with a bridge, three client namespaces
# running real DHCP clients (udhcpc, dhclient, dhcpcd). Leases come from
# the slow path; renewals are answered by the XDP program on br0; the
# leases and the counters then say which path answered what.
# Run as root from the repository (make demo). Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces, port 67, XDP)"; exit 1; }
for c in ip udhcpc dhclient dhcpcd curl; do command -v $c >/dev/null || { echo "demo: $c missing; run make deps"; exit 1; }; done

P=xdhcp-demo-$$
SRV=$P-srv
WORK=$(mktemp -d /tmp/xdhcp-demo.XXXXXX)
pids=()
cleanup() {
	set +e
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
	sleep 0.5
	for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
	[ -f "$WORK/xdhcpd.yaml" ] && $BIN/xdhcpd detach --config "$WORK/xdhcpd.yaml" >/dev/null
	for n in $SRV $P-c1 $P-c2 $P-c3; do ip netns pids $n 2>/dev/null | xargs -r kill -9; ip netns del $n 2>/dev/null; rm -rf /etc/netns/$n; done
	rm -f /var/lib/dhcpcd/eth-c3.lease # dhcpcd saves leases by interface name on the host
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "network: $SRV (bridge br0, 10.77.0.1/24) and three client namespaces"
ip netns add $SRV
ip -n $SRV link set lo up
ip -n $SRV link add br0 type bridge
ip -n $SRV addr add 10.77.0.1/24 dev br0
ip -n $SRV link set br0 up
i=0
for c in c1 c2 c3; do
	i=$((i+1))
	ip netns add $P-$c
	# The clients' hook scripts write /etc/resolv.conf; ip netns exec
	# bind-mounts this one over it so the host's stays untouched.
	mkdir -p /etc/netns/$P-$c && echo "# demo client $c" > /etc/netns/$P-$c/resolv.conf
	ip -n $P-$c link set lo up
	ip link add d$c-$$ type veth peer name eth-$c netns $P-$c
	ip link set d$c-$$ netns $SRV
	ip -n $SRV link set d$c-$$ master br0 up
	ip -n $P-$c link set eth-$c address 02:00:00:00:0$i:01
	ip -n $P-$c link set eth-$c up
done
# c3 is the reserved client in the config below.
ip -n $P-c3 link set eth-c3 address 02:00:00:00:00:42

cat > "$WORK/xdhcpd.yaml" <<YAML
server:
  interfaces: [br0]
  state-dir: $WORK/state
  control-socket: $WORK/xdhcpd.sock
  metrics-listen: 127.0.0.1:9467
fastpath:
  enabled: true
  mode: generic          # a bridge has no native XDP; NICs and veths do
  min-grant: 30s
  pin-dir: /sys/fs/bpf/xdhcp-demo-$$
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.199]
    lease-time: 2m
    options:
      routers: [10.77.0.1]
      dns-servers: [10.77.0.1]
      domain-name: example.net
    reservations:
      - hw-address: 02:00:00:00:00:42
        ip: 10.77.0.42
YAML
say "config check"
# In the namespace: check-config also warns if br0 does not exist where it runs.
nsenter --net=/run/netns/$SRV $BIN/xdhcpd check-config --config "$WORK/xdhcpd.yaml"

say "starting xdhcpd in $SRV (XDP on br0)"
# nsenter rather than ip netns exec: the latter remounts /sys and would
# hide the bpffs the daemon pins its maps in.
nsenter --net=/run/netns/$SRV $BIN/xdhcpd --config "$WORK/xdhcpd.yaml" 2> "$WORK/xdhcpd.log" &
pids+=($!)
for _ in $(seq 50); do [ -S "$WORK/xdhcpd.sock" ] && break; sleep 0.1; done
ctl() { $BIN/xdhcpctl --socket "$WORK/xdhcpd.sock" "$@"; }
ctl stats >/dev/null

say "clients: udhcpc in c1, dhclient in c2, dhcpcd in c3 (reserved MAC)"
ip netns exec $P-c1 udhcpc -f -i eth-c1 -t 5 -T 1 -s /etc/udhcpc/default.script > "$WORK/udhcpc.log" 2>&1 &
pids+=($!)
ip netns exec $P-c2 dhclient -4 -d -v -pf "$WORK/dhclient.pid" -lf "$WORK/dhclient.leases" eth-c2 > "$WORK/dhclient.log" 2>&1 &
pids+=($!)
ip netns exec $P-c3 dhcpcd -4 -B -q -f /dev/null eth-c3 > "$WORK/dhcpcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	n=$(ctl leases --json | grep -c '"state": "active"' || true)
	[ "$n" -ge 3 ] && break
	sleep 0.2
done
for c in c1 c2 c3; do
	for _ in $(seq 30); do ip -n $P-$c -4 addr show dev eth-$c | grep -q inet && break; sleep 0.2; done
	printf '  %s: ' $c; ip -n $P-$c -4 -br addr show dev eth-$c | awk '{print $3}'
done

metrics() { ip netns exec $SRV curl -s http://127.0.0.1:9467/metrics; }
paths() {
	metrics | awk '/^xdhcp_slowpath_replies_total\{type="ack"\}/ {s=$2} /^xdhcp_fastpath_replies_total / {f=$2} END {printf "  ACKs from the slow path: %d, renewals answered in XDP: %d\n", s, f}'
}
paths
say "renewals: udhcpc (SIGUSR1, unicast), dhcpcd (-N renew, -n rebind), three rounds"
for round in 1 2 3; do
	ip netns exec $P-c1 pkill -USR1 -f "udhcpc -f -i eth-c1" || true
	ip netns exec $P-c3 dhcpcd -4 -N eth-c3 >/dev/null 2>&1 || true
	sleep 1
	ip netns exec $P-c3 dhcpcd -4 -n eth-c3 >/dev/null 2>&1 || true
	sleep 1
done
paths
grep -h "lease of .* obtained" "$WORK/udhcpc.log" | tail -2 | sed 's/^/  udhcpc: /'

say "leases (xdhcpctl leases)"
ctl leases
say "counters (Prometheus, xdhcp_* from 127.0.0.1:9467 in $SRV)"
metrics | grep -E '^xdhcp_(slowpath|fastpath|pool)' | grep -v ' 0$'
say "status page: http://127.0.0.1:9467/ in $SRV (ip netns exec $SRV curl -s http://127.0.0.1:9467/)"
ip netns exec $SRV curl -s http://127.0.0.1:9467/ | grep -o '<b>10[^<]*</b> ([0-9]* pool addresses)\|XDP (fast path) [0-9.]*/s\|<td>[a-z0-9-]*</td><td>XDP [a-z]*</td>' | sed -e 's/<[^>]*>/ /g' -e 's/^ */  /'
# DEMO_STATUS_HTML=FILE keeps a copy of the page (to look at in a browser).
[ -z "${DEMO_STATUS_HTML:-}" ] || ip netns exec $SRV curl -s -o "$DEMO_STATUS_HTML" http://127.0.0.1:9467/
say "done; cleaning up"
