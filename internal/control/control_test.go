package control

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/nettest"
)

func startServer(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "ctl.sock")
	srv, err := NewServer(path, map[string]Handler{
		"echo": func(_ context.Context, a json.RawMessage) (any, error) { return a, nil },
		"fail": func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("boom") },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return path
}

func TestCallAndErrors(t *testing.T) {
	path := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got map[string]int
	if err := Call(ctx, path, "echo", map[string]int{"a": 1}, &got); err != nil || got["a"] != 1 {
		t.Fatalf("echo: %v %v", got, err)
	}
	if err := Call(ctx, path, "fail", nil, nil); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("fail: want boom, got %v", err)
	}
	if err := Call(ctx, path, "nope", nil, nil); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown: %v", err)
	}
}

func TestSocketIsOwnerOnly(t *testing.T) {
	path := startServer(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", st.Mode().Perm())
	}
	dst, _ := os.Stat(filepath.Dir(path))
	if dst.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, want 0700", dst.Mode().Perm())
	}
	// The socket is created elsewhere and moved in; nothing may be left
	// of the place it was made in.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 || ents[0].Name() != filepath.Base(path) {
		t.Fatalf("socket directory holds %v, want only the socket", ents)
	}
}

func TestGarbageGetsAnErrorAndTheServerLives(t *testing.T) {
	path := startServer(t)
	for _, garbage := range []string{"{not json\n", "\x00\x01\x02\n", `{"cmd": 5}` + "\n", strings.Repeat("x", 2<<20) + "\n"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go c.Write([]byte(garbage))
		var resp Response
		if err := json.NewDecoder(c).Decode(&resp); err != nil {
			t.Fatalf("no response to garbage %.20q: %v", garbage, err)
		}
		if resp.OK || resp.Error == "" {
			t.Fatalf("garbage %.20q accepted: %+v", garbage, resp)
		}
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Call(ctx, path, "echo", 1, nil); err != nil {
		t.Fatalf("server dead after garbage: %v", err)
	}
}

func TestSecondServerRefused(t *testing.T) {
	path := startServer(t)
	if _, err := NewServer(path, nil, nil); err == nil {
		t.Fatal("second server on a live socket was allowed")
	}
}

// TestAcceptErrorsAreWaitedOut: an accept that fails for a while (out of
// file descriptors) neither ends Serve, whose end stops the daemon, nor
// the socket: the next command is answered.
func TestAcceptErrorsAreWaitedOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	srv, err := NewServer(path, map[string]Handler{
		"echo": func(_ context.Context, a json.RawMessage) (any, error) { return a, nil },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.ln = &nettest.FailingListener{Listener: srv.ln, N: 3}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	var got map[string]int
	if err := Call(cctx, path, "echo", map[string]int{"a": 1}, &got); err != nil || got["a"] != 1 {
		t.Fatalf("echo after failed accepts: %v %v", got, err)
	}
	select {
	case err := <-done:
		t.Fatalf("Serve ended: %v", err)
	default:
	}
}
