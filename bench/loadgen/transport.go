package loadgen

import (
	"net/netip"
	"time"
)

// Packet is one DHCP message on its way out.
type Packet struct {
	Payload []byte
	// Client frames it in layer 2 mode.
	Client Identity
	// CIAddr is the address a bound client sends from in layer 2 mode
	// (unicast to the server); invalid means 0.0.0.0 to broadcast.
	CIAddr netip.Addr
}

// Received is one DHCP message read from the wire; N bytes of Buf.
type Received struct {
	Buf []byte
	N   int
	// Arrived is when the kernel took the datagram in (SO_TIMESTAMPNS,
	// wall clock), zero when the transport cannot say. The generator
	// shares the CPUs with the server: under load its receiver may run
	// tens of milliseconds after an answer arrived, and that wait is the
	// generator's, not the server's.
	Arrived time.Time
}

// Transport carries the generator's messages. Send and Recv may be called
// from different goroutines at once.
type Transport interface {
	// Name is the mode: "relay" or "l2".
	Name() string
	// Send writes pkts in as few system calls as it can and returns how
	// many left.
	Send(pkts []Packet) (int, error)
	// Recv fills msgs with DHCP messages addressed to clients, waiting up to
	// wait for the first, and returns how many it filled.
	Recv(msgs []Received, wait time.Duration) (int, error)
	Close() error
}

// addressOwner is implemented by transports that answer ARP for the
// clients (layer 2): the engine tells them who holds which address.
type addressOwner interface {
	setOwner(func(ip netip.Addr) (Identity, bool))
}
