// Package control is the daemon's operator socket: newline-delimited JSON
// requests and responses over a Unix socket that only the owner can open.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Request is one command. Args depend on Cmd.
type Request struct {
	Cmd  string          `json:"cmd"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response answers one Request.
type Response struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// LeaseInfo is the documented JSON form of a lease (xdhcpctl --json).
type LeaseInfo struct {
	IP          string `json:"ip"`
	HWAddress   string `json:"hw-address"`
	ClientID    string `json:"client-id"`
	State       string `json:"state"`
	Subnet      string `json:"subnet"`
	Hostname    string `json:"hostname,omitempty"`
	Start       string `json:"start,omitempty"`
	Expires     string `json:"expires"`
	CLTT        string `json:"client-last-transaction-time"`
	GIAddr      string `json:"giaddr,omitempty"`
	RelayInfo   string `json:"relay-info,omitempty"`
	VendorClass string `json:"vendor-class,omitempty"`
	Horizon     string `json:"horizon,omitempty"`
}

// Handler answers one command; the returned value is marshalled as Result.
type Handler func(ctx context.Context, args json.RawMessage) (any, error)

// Server serves the control socket.
type Server struct {
	path     string
	log      *slog.Logger
	handlers map[string]Handler
	ln       net.Listener
	wg       sync.WaitGroup
}

// NewServer creates the socket at path (its directory 0700, the socket
// 0600). An existing stale socket is replaced; a live one is an error.
func NewServer(path string, handlers map[string]Handler, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another daemon is listening", path)
	}
	// The socket is made 0600 inside a fresh 0700 directory and only then
	// moved into place, so that even in a shared directory nobody can
	// connect in the moment between creating it and restricting it.
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".xdhcpd-ctl-")
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	ln, err := net.Listen("unix", filepath.Join(tmp, "s"))
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // Serve removes path itself
	if err := os.Chmod(filepath.Join(tmp, "s"), 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket permissions: %w", err)
	}
	_ = os.Remove(path)
	if err := os.Rename(filepath.Join(tmp, "s"), path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{path: path, log: log, handlers: handlers, ln: ln}, nil
}

// Serve accepts connections until ctx ends, then waits for open ones.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	defer s.wg.Wait()
	defer os.Remove(s.path)
	var warned time.Time
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// A passing error (out of file descriptors) must not end
			// the daemon, whose owner stops everything when Serve
			// returns: it is logged and waited out.
			if now := time.Now(); now.Sub(warned) >= time.Minute {
				warned = now
				s.log.Warn("control socket accept failed; retrying (logged once a minute)", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// maxRequest bounds a request line so a client cannot make us buffer
// without limit.
const maxRequest = 1 << 20

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), maxRequest)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		var req Request
		resp := Response{}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp.Error = fmt.Sprintf("cannot parse request: %v", err)
		} else if h, ok := s.handlers[req.Cmd]; !ok {
			resp.Error = fmt.Sprintf("unknown command %q", req.Cmd)
		} else if v, err := h(ctx, req.Args); err != nil {
			resp.Error = err.Error()
		} else if b, err := json.Marshal(v); err != nil {
			resp.Error = fmt.Sprintf("encoding result: %v", err)
		} else {
			resp.OK, resp.Result = true, b
		}
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
	if err := sc.Err(); err != nil {
		_ = enc.Encode(Response{Error: fmt.Sprintf("reading request: %v", err)})
	}
}

// Call sends one command to the daemon at path and decodes the result into out.
func Call(ctx context.Context, path, cmd string, args, out any) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	req := Request{Cmd: cmd}
	if args != nil {
		if req.Args, err = json.Marshal(args); err != nil {
			return err
		}
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("sending %s: %w", cmd, err)
	}
	dec := json.NewDecoder(bufio.NewReader(c))
	var resp Response
	if err := dec.Decode(&resp); err != nil {
		return fmt.Errorf("reading reply to %s: %w", cmd, err)
	}
	if !resp.OK {
		return fmt.Errorf("%s: %s", cmd, resp.Error)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Result, out); err != nil {
			return fmt.Errorf("decoding reply to %s: %w", cmd, err)
		}
	}
	return nil
}
