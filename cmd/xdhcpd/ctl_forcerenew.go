package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/slowpath"
)

// The FORCERENEW control commands (internal/control/forcerenew.go has the
// protocol). The daemon checks every argument itself: the socket is the
// interface, xdhcpctl only one client of it.

func (d *daemon) forceRenew(_ context.Context, raw json.RawMessage) (any, error) {
	var a control.ForceRenewArgs
	if err := strictJSON(raw, &a); err != nil {
		return nil, fmt.Errorf("arguments: %w", err)
	}
	sel, err := selectorFrom(a)
	if err != nil {
		return nil, err
	}
	if a.Rate < 0 {
		return nil, fmt.Errorf("rate %v: must be 0 (unlimited) or positive", a.Rate)
	}
	id, err := d.srv.StartForceRenew(sel, slowpath.CampaignOptions{Move: a.Move, Rate: a.Rate})
	if errors.Is(err, slowpath.ErrNoTargets) {
		// No "forcerenew:" prefix: the command's name already says it.
		return nil, fmt.Errorf("no active lease or informed client matches %s", sel)
	}
	if err != nil {
		return nil, err
	}
	st, err := d.srv.Campaign(id)
	if err != nil {
		return nil, err
	}
	return d.campaignInfo(st), nil
}

func (d *daemon) forceRenewStatus(_ context.Context, raw json.RawMessage) (any, error) {
	var a control.CampaignID
	if len(raw) > 0 {
		if err := strictJSON(raw, &a); err != nil {
			return nil, fmt.Errorf("arguments: %w", err)
		}
	}
	if a.ID == "" {
		all := d.srv.Campaigns()
		out := make([]control.CampaignInfo, 0, len(all))
		for _, st := range all {
			out = append(out, d.campaignInfo(st))
		}
		return out, nil
	}
	st, err := d.srv.Campaign(a.ID)
	if err != nil {
		return nil, noCampaign(a.ID, err)
	}
	return d.campaignInfo(st), nil
}

func (d *daemon) forceRenewStop(_ context.Context, raw json.RawMessage) (any, error) {
	var a control.CampaignID
	if err := strictJSON(raw, &a); err != nil || a.ID == "" {
		return nil, errors.New("stop needs a campaign id")
	}
	if err := d.srv.StopCampaign(a.ID); err != nil {
		return nil, noCampaign(a.ID, err)
	}
	st, err := d.srv.Campaign(a.ID)
	if err != nil {
		return nil, err
	}
	return d.campaignInfo(st), nil
}

func noCampaign(id string, err error) error {
	if errors.Is(err, slowpath.ErrNoCampaign) {
		return fmt.Errorf("no campaign %q (forcerenew-status lists them)", id)
	}
	return err
}

// strictJSON decodes raw into v, refusing unknown fields: a misspelt
// selector must not become "no selector" or, worse, another one.
func strictJSON(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// selectorFrom reads the one selector in a, with an error naming the
// field for anything malformed.
func selectorFrom(a control.ForceRenewArgs) (slowpath.Selector, error) {
	var sel slowpath.Selector
	var given []string
	for _, f := range []struct{ name, v string }{{"ip", a.IP}, {"mac", a.MAC}, {"client-id", a.ClientID}, {"subnet", a.Subnet}, {"pool", a.Pool}} {
		if f.v != "" {
			given = append(given, f.name)
		}
	}
	if len(given) != 1 {
		return sel, fmt.Errorf("give exactly one of ip, mac, client-id, subnet, pool (got %d: %s)", len(given), strings.Join(given, ", "))
	}
	var err error
	switch {
	case a.IP != "":
		if sel.IP, err = netip.ParseAddr(a.IP); err != nil || !sel.IP.Is4() {
			return sel, fmt.Errorf("ip %q is not an IPv4 address", a.IP)
		}
	case a.MAC != "":
		if sel.HWAddr, err = net.ParseMAC(a.MAC); err != nil {
			return sel, fmt.Errorf("mac %q: %w", a.MAC, err)
		}
	case a.ClientID != "":
		if sel.ClientID, err = hex.DecodeString(strings.NewReplacer(":", "", "-", "").Replace(a.ClientID)); err != nil || len(sel.ClientID) < 2 || len(sel.ClientID) > 255 {
			return sel, fmt.Errorf("client-id %q is not 2 to 255 bytes of hex", a.ClientID)
		}
	case a.Subnet != "":
		if sel.Subnet, err = netip.ParsePrefix(a.Subnet); err != nil || !sel.Subnet.Addr().Is4() || sel.Subnet.Masked() != sel.Subnet {
			return sel, fmt.Errorf("subnet %q is not an IPv4 prefix without host bits", a.Subnet)
		}
	default:
		lo, hi, ok := strings.Cut(a.Pool, "-")
		a1, err1 := netip.ParseAddr(strings.TrimSpace(lo))
		a2, err2 := netip.ParseAddr(strings.TrimSpace(hi))
		if !ok || err1 != nil || err2 != nil || !a1.Is4() || !a2.Is4() || a2.Less(a1) {
			return sel, fmt.Errorf("pool %q is not an IPv4 range A-B", a.Pool)
		}
		sel.Pool = [2]netip.Addr{a1, a2}
	}
	return sel, nil
}

// campaignInfo is a campaign in the documented JSON form. The clients
// that could not be forced are listed with the client identifier their
// lease holds now, when it is still theirs, since a DUID is how dhcpcd's
// leases are known (the campaign itself records only the address and
// hardware address).
func (d *daemon) campaignInfo(st slowpath.CampaignStatus) control.CampaignInfo {
	ci := control.CampaignInfo{
		ID: st.ID, Selector: st.Selector.String(), Move: st.Options.Move, Rate: st.Options.Rate, Started: rfc3339(st.Started),
		Total: st.Total, Sent: st.Sent, Transmissions: st.Transmissions, Renewed: st.Renewed, Moved: st.Moved, Informed: st.Informed,
		NoAnswer: st.NoAnswer, NoKey: st.NoKey, Skipped: st.Skipped, Remaining: st.Remaining, Done: st.Done, Stopped: st.Stopped,
		MovedAtRenewal: st.MovedAtRenewal,
		NotForced:      []control.UnforcedClient{},
	}
	add := func(cs []slowpath.Client, reason string) {
		for _, c := range cs {
			u := control.UnforcedClient{IP: c.IP.String(), Reason: reason}
			if len(c.HWAddr) > 0 {
				u.HWAddress = c.HWAddr.String()
			}
			if l := d.srv.Lookup(c.IP); l != nil && len(l.ClientID) > 0 && bytes.Equal(l.HWAddr, c.HWAddr) {
				u.ClientID = colonHex(l.ClientID)
			}
			ci.NotForced = append(ci.NotForced, u)
		}
	}
	add(st.NoKeyClients, "no-key")
	add(st.NoAnswerClients, "no-answer")
	return ci
}
