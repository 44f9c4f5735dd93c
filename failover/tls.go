package failover

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// TLS is mutual TLS between xdhcpd partners (issue 18; draft-12 §13 leaves
// the choice of protection open). Each side presents Cert and checks the
// partner's certificate against CA and against PeerName, or the partner's
// address when PeerName is empty (an IP SAN). ISC dhcpd speaks no TLS: a
// pair with dhcpd runs plain TCP, and the daemon warns about it.
//
// The files are read at every connection, so renewed certificates take
// effect at the next reconnect without a restart.
type TLS struct {
	Cert, Key, CA string
	PeerName      string
}

// handshakeTimeout bounds a TLS handshake: a partner that connects and
// says nothing does not hold the listener.
const handshakeTimeout = 5 * time.Second

// config reads the files and returns the connection's TLS configuration,
// as client (dialed) or server (accepted). Both sides require TLS 1.3 and
// a certificate from the other.
func (t *TLS) config(peer netip.Addr, client bool) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("failover TLS certificate %s with key %s: %w", t.Cert, t.Key, err)
	}
	pem, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, fmt.Errorf("failover TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("failover TLS CA %s: no PEM certificate in it", t.CA)
	}
	name := t.PeerName
	if name == "" {
		name = peer.String()
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if client {
		c.RootCAs, c.ServerName = pool, name
		return c, nil
	}
	c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	// A server checks only the client certificate's chain; the name is
	// ours to check, or any holder of a certificate from the CA could
	// pose as the partner.
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the partner sent no certificate")
		}
		if err := cs.PeerCertificates[0].VerifyHostname(name); err != nil {
			return fmt.Errorf("the partner's certificate: %w", err)
		}
		return nil
	}
	return c, nil
}

// secure runs the TLS handshake on c when TLS is configured, and returns
// the connection to use; c is closed when it fails.
func (r *Relationship) secure(ctx context.Context, c net.Conn, client bool) (net.Conn, error) {
	t := r.cfg.TLS
	if t == nil {
		return c, nil
	}
	cfg, err := t.config(r.cfg.Peer.Addr(), client)
	if err != nil {
		c.Close()
		return nil, err
	}
	var tc *tls.Conn
	if client {
		tc = tls.Client(c, cfg)
	} else {
		tc = tls.Server(c, cfg)
	}
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", c.RemoteAddr(), err)
	}
	return tc, nil
}

// Check reads the files as a connection would, for check-config and the
// daemon's start: a bad certificate is a clear error then, not a partner
// refused at the first connection.
func (t *TLS) Check(peer netip.Addr) error {
	_, err := t.config(peer, true)
	return err
}
