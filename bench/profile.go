package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// fetchProfile saves a daemon's profile read from its /debug/pprof/
// (server.pprof) at addr inside ns: name is "profile" (CPU, for the next
// seconds) or another of Go's profiles ("allocs", "heap"). The connection is
// opened on a thread in ns, and the request is written by hand on it:
// http.Transport would dial from another thread, outside the namespace.
func fetchProfile(ns *netns.NS, addr, name string, seconds int, out string) error {
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		return fmt.Errorf("profile from %s: %w", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Duration(seconds)*time.Second + 30*time.Second))
	path := "/debug/pprof/" + name
	if seconds > 0 {
		path += fmt.Sprintf("?seconds=%d", seconds)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		return fmt.Errorf("profile from %s: %w", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("profile from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile from %s: %s", addr, resp.Status)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile from %s: %w", addr, err)
	}
	return f.Close()
}
