package control

// The FORCERENEW commands (issue 16): "forcerenew" starts a campaign with
// ForceRenewArgs and answers its CampaignInfo; "forcerenew-status" answers
// one campaign's CampaignInfo (args CampaignID) or, without an id, every
// campaign's; "forcerenew-stop" stops one (args CampaignID) and answers
// its CampaignInfo.

// ForceRenewArgs selects the clients of a campaign: exactly one of IP,
// MAC, ClientID, Subnet and Pool is set.
type ForceRenewArgs struct {
	IP       string `json:"ip,omitempty"`        // one IPv4 address
	MAC      string `json:"mac,omitempty"`       // a hardware address: every lease it holds
	ClientID string `json:"client-id,omitempty"` // hex, colons allowed: every lease it holds
	Subnet   string `json:"subnet,omitempty"`    // a CIDR prefix: every lease inside it
	Pool     string `json:"pool,omitempty"`      // "A-B": every lease in the range
	// Move makes each client leave its address: the renewal the
	// FORCERENEW provokes is NAKed and the DISCOVER that follows is
	// given an address where the configuration now says (a reservation,
	// or a pool that is not draining).
	Move bool `json:"move,omitempty"`
	// Rate bounds the clients forced per second; 0 is unlimited.
	Rate float64 `json:"rate,omitempty"`
}

// CampaignID names a campaign in "forcerenew-status" and "forcerenew-stop".
type CampaignID struct {
	ID string `json:"id,omitempty"`
}

// CampaignInfo is the documented JSON form of a campaign's progress
// (xdhcpctl forcerenew --json).
type CampaignInfo struct {
	ID       string  `json:"id"`
	Selector string  `json:"selector"` // as given, e.g. "pool 10.77.0.100-10.77.0.149"
	Move     bool    `json:"move"`
	Rate     float64 `json:"rate,omitempty"` // clients forced per second; 0: unlimited
	Started  string  `json:"started,omitempty"`
	// Total is how many clients the selector matched when the campaign
	// started (active leases, and clients configured by DHCPINFORM). Each
	// ends in one of Renewed, Moved, Informed, NoAnswer, NoKey and Skipped;
	// Remaining are the others. Sent counts clients, not packets.
	Total         int  `json:"total"`
	Sent          int  `json:"sent"`          // clients sent at least one FORCERENEW
	Transmissions int  `json:"transmissions"` // FORCERENEWs sent, retransmissions included
	Renewed       int  `json:"renewed"`       // answered with a REQUEST or INFORM and kept their address
	Moved         int  `json:"moved"`         // answered and were NAKed so as to start over where the configuration now says
	Informed      int  `json:"informed"`      // configured by DHCPINFORM (no lease), answered with a new INFORM; never moved
	NoAnswer      int  `json:"no-answer"`     // every retransmission went unanswered
	NoKey         int  `json:"no-key"`        // never sent option 145, and the subnet sends no unsigned FORCERENEW
	Skipped       int  `json:"skipped"`       // the lease ended (released, expired, replaced) before it was forced
	Remaining     int  `json:"remaining"`     // not yet finished either way
	Done          bool `json:"done"`
	Stopped       bool `json:"stopped,omitempty"` // ended by forcerenew-stop before every client was tried

	// MovedAtRenewal counts, of a move campaign's NoKey and NoAnswer
	// clients, those since NAKed at their own next renewal: it can grow
	// after Done, up to NoKey+NoAnswer (less when leases end first).
	MovedAtRenewal int `json:"moved-at-renewal"`

	// NotForced lists the clients that could not be forced (no key, no
	// answer); their leases move at their next renewal.
	NotForced []UnforcedClient `json:"not-forced"`
}

// UnforcedClient is one client a campaign could not force, and why.
type UnforcedClient struct {
	IP        string `json:"ip"`
	HWAddress string `json:"hw-address,omitempty"`
	ClientID  string `json:"client-id,omitempty"`
	Reason    string `json:"reason"` // "no-key" or "no-answer"
}
