// Package nettest has network parts that misbehave on purpose, for tests
// of the servers that must survive them.
package nettest

import (
	"net"
	"os"
	"syscall"
)

// FailingListener fails its first N Accepts as a process out of file
// descriptors would (EMFILE), then accepts from the Listener it wraps.
// Not safe for concurrent Accepts, which a server's one accept loop never
// makes.
type FailingListener struct {
	net.Listener
	N int
}

// Accept implements net.Listener.
func (l *FailingListener) Accept() (net.Conn, error) {
	if l.N > 0 {
		l.N--
		return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}
