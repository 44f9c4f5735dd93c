// Package wire encodes and decodes failover messages as
// draft-ietf-dhc-failover-12 defines them and ISC dhcpd 4.4 sends them:
// a 12-byte header (length, type, payload offset, time, xid) followed by
// options of code(2) length(2) data. It knows nothing of state; the
// failover package gives the messages their meaning.
package wire

import (
	"net/netip"
	"time"
)

// MsgType is a failover message type (draft-12 §6.1; ISC 4.x numbering,
// where UPDREQALL is 7 and UPDREQ 9).
type MsgType uint8

// Message types.
const (
	PoolReq    MsgType = 1
	PoolResp   MsgType = 2
	BndUpd     MsgType = 3
	BndAck     MsgType = 4
	Connect    MsgType = 5
	ConnectAck MsgType = 6
	UpdReqAll  MsgType = 7
	UpdDone    MsgType = 8
	UpdReq     MsgType = 9
	State      MsgType = 10
	Contact    MsgType = 11
	Disconnect MsgType = 12
)

// OptCode is a failover option code (draft-12 §12).
type OptCode uint16

// Option codes.
const (
	OptAddressesTransferred OptCode = 1
	OptAssignedIP           OptCode = 2
	OptBindingStatus        OptCode = 3
	OptClientID             OptCode = 4
	OptClientHWAddr         OptCode = 5
	OptCLTT                 OptCode = 6
	OptClientReplyOptions   OptCode = 7
	OptClientRequestOptions OptCode = 8
	OptDDNS                 OptCode = 9
	OptDelayedService       OptCode = 10
	OptHBA                  OptCode = 11
	OptIPFlags              OptCode = 12
	OptLeaseExpiration      OptCode = 13
	OptMaxUnacked           OptCode = 14
	OptMCLT                 OptCode = 15
	OptMessage              OptCode = 16
	OptMessageDigest        OptCode = 17
	OptPotentialExpiration  OptCode = 18
	OptReceiveTimer         OptCode = 19
	OptProtocolVersion      OptCode = 20
	OptRejectReason         OptCode = 21
	OptRelationshipName     OptCode = 22
	OptServerFlags          OptCode = 23
	OptServerState          OptCode = 24
	OptStartTimeOfState     OptCode = 25
	OptTLSReply             OptCode = 26
	OptTLSRequest           OptCode = 27
	OptVendorClass          OptCode = 28
	OptVendorOptions        OptCode = 29
)

// ServerState is a failover server state (draft-12 §12.24; RECOVER-WAIT
// has no number in the draft, ISC uses 254).
type ServerState uint8

// Server states.
const (
	StateStartup               ServerState = 1
	StateNormal                ServerState = 2
	StateCommInterrupted       ServerState = 3
	StatePartnerDown           ServerState = 4
	StatePotentialConflict     ServerState = 5
	StateRecover               ServerState = 6
	StatePaused                ServerState = 7
	StateShutdown              ServerState = 8
	StateRecoverDone           ServerState = 9
	StateResolutionInterrupted ServerState = 10
	StateConflictDone          ServerState = 11
	StateRecoverWait           ServerState = 254
)

// Status is a binding status (draft-12 §12.3); its values are those of
// slowpath/lease.State.
type Status uint8

// Binding statuses.
const (
	StatusFree      Status = 1
	StatusActive    Status = 2
	StatusExpired   Status = 3
	StatusReleased  Status = 4
	StatusAbandoned Status = 5
	StatusReset     Status = 6
	StatusBackup    Status = 7
)

// Reason is a reject reason (draft-12 §12.21).
type Reason uint8

// Reject reasons.
const (
	ReasonIllegalIP           Reason = 1
	ReasonFatalConflict       Reason = 2
	ReasonMissingBinding      Reason = 3
	ReasonTimeMismatch        Reason = 4
	ReasonInvalidMCLT         Reason = 5
	ReasonUnknown             Reason = 6
	ReasonDuplicate           Reason = 7
	ReasonInvalidPartner      Reason = 8
	ReasonTLSNotSupported     Reason = 9
	ReasonTLSNotConfigured    Reason = 10
	ReasonTLSRequired         Reason = 11
	ReasonDigestNotSupported  Reason = 12
	ReasonDigestNotConfigured Reason = 13
	ReasonVersionMismatch     Reason = 14
	ReasonOutdated            Reason = 15
	ReasonLessCritical        Reason = 16
	ReasonNoTraffic           Reason = 17
	ReasonHBAConflict         Reason = 18
	ReasonNotReserved         Reason = 19
	ReasonDigestMismatch      Reason = 20
	ReasonMissingDigest       Reason = 21
	ReasonUnknownError        Reason = 254
)

// IP-flags bits (draft-12 §12.12; two bytes on the wire as ISC sends them).
const (
	FlagReserved uint16 = 0x0001
	FlagBOOTP    uint16 = 0x0002
)

// Limits of the framing (draft-12 §6.1).
const (
	HeaderLen = 12
	MaxLen    = 2048
)

// Message is one decoded failover message. Time is the sender's clock
// (seconds, uncorrected); the failover package applies the skew.
type Message struct {
	Type MsgType
	Time uint32
	XID  uint32
	// Bindings are the per-address groups of a BNDUPD or BNDACK, in order
	// (each starts at an assigned-IP-address option).
	Bindings []Binding
	// The scalar options of every other message; zero/empty when absent
	// (Has tells absent from zero).
	Name             string // relationship-name
	MaxUnacked       uint32
	ReceiveTimer     uint32
	MCLT             uint32
	HBA              []byte // 32 bytes when present
	ProtoVersion     uint8
	TLSRequest       uint8
	TLSReply         uint8
	VendorClass      string
	ServerState      ServerState
	ServerFlags      uint8
	StartOfState     uint32 // start-time-of-state (sender's clock)
	RejectReason     Reason
	Text             string // message option
	AddrsTransferred uint32
	// Has records which message-level options were present.
	Has map[OptCode]bool
}

// Binding is one address's group in a BNDUPD or BNDACK. Times are the
// sender's clock in seconds since 1970, zero when absent.
type Binding struct {
	IP       netip.Addr
	Status   Status // 0 when absent (BNDACK)
	Flags    uint16
	ClientID []byte
	HWType   uint8
	HWAddr   []byte
	Expiry   uint32 // lease-expiration-time
	PotExp   uint32 // potential-expiration-time
	StateAt  uint32 // start-time-of-state
	CLTT     uint32 // client-last-transaction-time
	// RequestOptions / ReplyOptions are DHCP options (without the magic
	// cookie) of client-request-options / client-reply-options.
	RequestOptions []byte
	ReplyOptions   []byte
	// Reject is the reject reason in a BNDACK (0: accepted), Text its message.
	Reject Reason
	Text   string
}

// Unix converts a wire time to a time.Time (zero stays zero).
func Unix(t uint32) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(int64(t), 0)
}

// Seconds converts a time to the wire's seconds (zero stays zero; times
// outside the uint32 range are clamped).
func Seconds(t time.Time) uint32 {
	if t.IsZero() {
		return 0
	}
	u := t.Unix()
	switch {
	case u <= 0:
		return 1
	case u > 0xffffffff:
		return 0xffffffff
	}
	return uint32(u)
}
