#!/usr/bin/env bash
# xdhcp renumbering walk-through: clients on an old pool are moved to a
# new one with FORCERENEW, one command once the configuration says so.
# A server namespace with a bridge, three dhcpcd clients (they send option
# 145, so each gets a FORCERENEW key) and one udhcpc (no key: it is listed
# as not forced and moves at its own next renewal).
# Run as root from the repository after make build. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
[ "$(id -u)" = 0 ] || { echo "renumber: needs root (network namespaces, port 67)"; exit 1; }
for c in ip udhcpc dhcpcd curl nsenter; do command -v $c >/dev/null || { echo "renumber: $c missing; run make deps"; exit 1; }; done
[ -x $BIN/xdhcpd ] && [ -x $BIN/xdhcpctl ] || { echo "renumber: $BIN/xdhcpd or $BIN/xdhcpctl missing; run make build"; exit 1; }

OLD=10.77.0.100-10.77.0.149
NEW=10.77.0.200-10.77.0.249
P=xdhcp-rn-$$
SRV=$P-srv
CLIENTS="c1 c2 c3 c4" # c1-c3 dhcpcd, c4 udhcpc
WORK=$(mktemp -d /tmp/xdhcp-renumber.XXXXXX)
pids=()
cleanup() {
	set +e
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
	sleep 0.5
	for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
	for n in $SRV $(for c in $CLIENTS; do echo $P-$c; done); do
		ip netns pids $n 2>/dev/null | xargs -r kill -9
		ip netns del $n 2>/dev/null
		rm -rf /etc/netns/$n
	done
	# dhcpcd keeps its lease, pid file and sockets on the host, by interface.
	for c in $CLIENTS; do
		rm -f /var/lib/dhcpcd/rn$c-$$.lease /run/dhcpcd/rn$c-$$.pid /run/dhcpcd/rn$c-$$*.sock
	done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

ip netns add $SRV
ip -n $SRV link set lo up
ip -n $SRV link add br0 type bridge
ip -n $SRV addr add 10.77.0.1/24 dev br0
ip -n $SRV link set br0 up
i=0
for c in $CLIENTS; do
	i=$((i+1))
	ip netns add $P-$c
	mkdir -p /etc/netns/$P-$c && echo "# renumber client $c" > /etc/netns/$P-$c/resolv.conf
	ip -n $P-$c link set lo up
	ip link add r$c-$$ type veth peer name rn$c-$$ netns $P-$c
	ip link set r$c-$$ netns $SRV
	ip -n $SRV link set r$c-$$ master br0 up
	ip -n $P-$c link set rn$c-$$ address 02:00:00:00:1$i:01
	ip -n $P-$c link set rn$c-$$ up
done

config() { # config POOLS
	cat > "$WORK/xdhcpd.yaml" <<YAML
server:
  interfaces: [br0]
  state-dir: $WORK/state
  control-socket: $WORK/xdhcpd.sock
  metrics-listen: 127.0.0.1:9467
subnets:
  - subnet: 10.77.0.0/24
    pools: $1
    lease-time: 1h             # nobody renews on their own during the walk-through
    options:
      routers: [10.77.0.1]
    forcerenew:
      retransmit-start: 1s     # 1 s, 2 s, 4 s: a client that never answers is given up on in 7 s
      retransmit-count: 3
YAML
}
ctl() { $BIN/xdhcpctl --socket "$WORK/xdhcpd.sock" "$@"; }
draining() {
	ip netns exec $SRV curl -s http://127.0.0.1:9467/metrics | grep '^xdhcp_pool_addresses{state="draining"' || true
}

say "1. the old pool $OLD serves four clients"
config "[$OLD]"
nsenter --net=/run/netns/$SRV $BIN/xdhcpd --config "$WORK/xdhcpd.yaml" 2> "$WORK/xdhcpd.log" &
pids+=($!)
for _ in $(seq 50); do [ -S "$WORK/xdhcpd.sock" ] && ctl stats >/dev/null 2>&1 && break; sleep 0.1; done
for c in c1 c2 c3; do
	printf 'ipv4only\nnoipv4ll\nnoarp\n' > "$WORK/dhcpcd-$c.conf"
	ip netns exec $P-$c dhcpcd -4 -B -d -f "$WORK/dhcpcd-$c.conf" rn$c-$$ > "$WORK/dhcpcd-$c.log" 2>&1 &
	pids+=($!)
done
ip netns exec $P-c4 udhcpc -f -i rnc4-$$ -t 5 -T 1 -s /etc/udhcpc/default.script > "$WORK/udhcpc.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do
	[ "$(ctl leases --json | grep -c '"state": "active"' || true)" -ge 4 ] && break
	sleep 0.2
done
# dhcpcd hears a unicast FORCERENEW once it listens on its address.
for c in c1 c2 c3; do
	for _ in $(seq 50); do grep -q "spawned listener" "$WORK/dhcpcd-$c.log" && break; sleep 0.1; done
	printf '  %s (dhcpcd): %s\n' $c "$(grep -o 'accepted reconfigure key' "$WORK/dhcpcd-$c.log" | head -1 || echo 'no key')"
done
run ctl leases

say "2. add the new pool, mark the old one draining, check and reload"
config "[{range: $OLD, drain: true}, $NEW]"
grep -A1 'pools:' "$WORK/xdhcpd.yaml"
run nsenter --net=/run/netns/$SRV $BIN/xdhcpd check-config --config "$WORK/xdhcpd.yaml"
run ctl reload
draining

say "3. force every client of the old pool to move (2 clients a second)"
# Exit status 3: the campaign ended with clients it could not force
# (udhcpc has no key); they are listed and move at their next renewal.
run ctl forcerenew --pool $OLD --move --rate 2/s --wait || [ $? -eq 3 ]

say "4. where the clients are now"
sleep 2 # the moved clients' DISCOVER and REQUEST
run ctl leases
for c in $CLIENTS; do printf '  %s: ' $c; ip -n $P-$c -4 -br addr show dev rn$c-$$ | awk '{print $3}'; done
draining
say "done; cleaning up"
