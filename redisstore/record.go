package redisstore

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/oklog/ulid/v2"
)

// A record is one binary string:
//
//	0      format, recordFormat
//	1..8   Version, big-endian: the Update script compares it in place
//	9..10  flags, big-endian
//	then   times in Unix milliseconds, as varints: Session.ExpiresAt,
//	       User.CreatedAt, then Session.UpdatedAt, User.UpdatedAt,
//	       Session.CreatedAt and ClaimUntil unless a flag says they equal
//	       User.CreatedAt (or, for ClaimUntil, that there is no claim)
//	then   TokenHash (32 bytes) unless a flag says it is zero
//	then   Email unless it is the default temp@{id}.com, Name unless it is
//	       "Anonymous", Session.ID (a 16-byte ULID when it is one),
//	       Session.UserID unless it is User.ID, IPAddress (4 or 16 bytes when
//	       it is an address), UserAgent, LinkedTo, ClaimOwner: each a uvarint
//	       length and its bytes, absent when a flag says so
//	then   Data, to the end
//
// User.ID is not stored: the key names it. What can be derived is not
// stored either, so a guest with a browser's User-Agent and no data takes
// about 200 bytes.
const (
	recordFormat = 2
	offVersion   = 1
	offFlags     = 9
	headerSize   = 11
)

const (
	flagEmailVerified = 1 << iota
	flagAnonymous
	flagDeleted
	flagSessionUpdated // Session.UpdatedAt differs from User.CreatedAt and is stored
	flagUserUpdated    // likewise User.UpdatedAt
	flagSessionCreated // likewise Session.CreatedAt
	flagClaim          // ClaimUntil and ClaimOwner are stored
	flagTokenHash      // TokenHash is not zero and is stored
	flagEmail          // Email is not the default and is stored
	flagName           // Name is not "Anonymous" and is stored
	flagSessionULID    // Session.ID is stored as a 16-byte ULID
	flagSessionUserID  // Session.UserID differs from User.ID and is stored
	flagIP             // IPAddress is stored as 4 or 16 bytes
	flagLinkedTo       // LinkedTo is stored
)

var errMalformed = errors.New("redisstore: malformed record")

// zeroTime stands for time.Time{}, which has no Unix millisecond form.
const zeroTime = math.MinInt64

func millis(t time.Time) int64 {
	if t.IsZero() {
		return zeroTime
	}
	return t.UnixMilli()
}

func fromMillis(n int64) time.Time {
	if n == zeroTime {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

func defaultEmail(id string) string { return "temp@" + strings.ToLower(id) + ".com" }

// encode returns rec's stored form, as version v. Session.Token is never
// written: TokenHash stands for it.
func encode(rec *anonymous.Record, v uint64) []byte {
	u, s := &rec.User, &rec.Session
	var flags uint16
	set := func(f uint16, on bool) {
		if on {
			flags |= f
		}
	}
	set(flagEmailVerified, u.EmailVerified)
	set(flagAnonymous, u.IsAnonymous)
	set(flagDeleted, rec.Deleted)
	set(flagSessionUpdated, !s.UpdatedAt.Equal(u.CreatedAt))
	set(flagUserUpdated, !u.UpdatedAt.Equal(u.CreatedAt))
	set(flagSessionCreated, !s.CreatedAt.Equal(u.CreatedAt))
	set(flagClaim, rec.ClaimOwner != "" || !rec.ClaimUntil.IsZero())
	set(flagTokenHash, rec.TokenHash != [32]byte{})
	set(flagEmail, u.Email != defaultEmail(u.ID))
	set(flagName, u.Name != "Anonymous")
	sid, sidErr := ulid.ParseStrict(s.ID)
	set(flagSessionULID, sidErr == nil && sid.String() == s.ID)
	set(flagSessionUserID, s.UserID != u.ID)
	ip, ipErr := netip.ParseAddr(s.IPAddress)
	set(flagIP, ipErr == nil && ip.Zone() == "" && ip.String() == s.IPAddress)
	set(flagLinkedTo, rec.LinkedTo != "")

	n := headerSize + 6*binary.MaxVarintLen64 + 32 + 16 + 16 + 8*binary.MaxVarintLen16 +
		len(u.Email) + len(u.Name) + len(s.ID) + len(s.UserID) + len(s.UserAgent) + len(rec.LinkedTo) + len(rec.ClaimOwner) + len(rec.Data)
	b := make([]byte, headerSize, n)
	b[0] = recordFormat
	binary.BigEndian.PutUint64(b[offVersion:], v)
	binary.BigEndian.PutUint16(b[offFlags:], flags)
	b = binary.AppendVarint(b, millis(s.ExpiresAt))
	b = binary.AppendVarint(b, millis(u.CreatedAt))
	if flags&flagSessionUpdated != 0 {
		b = binary.AppendVarint(b, millis(s.UpdatedAt))
	}
	if flags&flagUserUpdated != 0 {
		b = binary.AppendVarint(b, millis(u.UpdatedAt))
	}
	if flags&flagSessionCreated != 0 {
		b = binary.AppendVarint(b, millis(s.CreatedAt))
	}
	if flags&flagClaim != 0 {
		b = binary.AppendVarint(b, millis(rec.ClaimUntil))
	}
	if flags&flagTokenHash != 0 {
		b = append(b, rec.TokenHash[:]...)
	}
	if flags&flagEmail != 0 {
		b = appendString(b, u.Email)
	}
	if flags&flagName != 0 {
		b = appendString(b, u.Name)
	}
	if flags&flagSessionULID != 0 {
		b = append(b, sid[:]...)
	} else {
		b = appendString(b, s.ID)
	}
	if flags&flagSessionUserID != 0 {
		b = appendString(b, s.UserID)
	}
	if flags&flagIP != 0 {
		b = appendString(b, string(ip.AsSlice()))
	} else {
		b = appendString(b, s.IPAddress)
	}
	b = appendString(b, s.UserAgent)
	if flags&flagLinkedTo != 0 {
		b = appendString(b, rec.LinkedTo)
	}
	if flags&flagClaim != 0 {
		b = appendString(b, rec.ClaimOwner)
	}
	return append(b, rec.Data...)
}

// decode parses a stored value of guest id. The record's strings share v's
// memory; only the data is copied.
func decode(id, v string) (*anonymous.Record, error) {
	if len(v) < headerSize || v[0] != recordFormat {
		return nil, errMalformed
	}
	d := decoder{p: v[headerSize:]}
	flags := uint16(v[offFlags])<<8 | uint16(v[offFlags+1])
	rec := &anonymous.Record{Version: binary.BigEndian.Uint64([]byte(v[offVersion:offFlags]))}
	u, s := &rec.User, &rec.Session
	u.ID, s.UserID = id, id
	u.EmailVerified = flags&flagEmailVerified != 0
	u.IsAnonymous = flags&flagAnonymous != 0
	rec.Deleted = flags&flagDeleted != 0
	s.ExpiresAt = d.time()
	u.CreatedAt = d.time()
	s.UpdatedAt, u.UpdatedAt, s.CreatedAt = u.CreatedAt, u.CreatedAt, u.CreatedAt
	if flags&flagSessionUpdated != 0 {
		s.UpdatedAt = d.time()
	}
	if flags&flagUserUpdated != 0 {
		u.UpdatedAt = d.time()
	}
	if flags&flagSessionCreated != 0 {
		s.CreatedAt = d.time()
	}
	if flags&flagClaim != 0 {
		rec.ClaimUntil = d.time()
	}
	if flags&flagTokenHash != 0 {
		copy(rec.TokenHash[:], d.bytes(32))
	}
	u.Email, u.Name = defaultEmail(id), "Anonymous"
	if flags&flagEmail != 0 {
		u.Email = d.string()
	}
	if flags&flagName != 0 {
		u.Name = d.string()
	}
	if flags&flagSessionULID != 0 {
		var sid ulid.ULID
		copy(sid[:], d.bytes(16))
		s.ID = sid.String()
	} else {
		s.ID = d.string()
	}
	if flags&flagSessionUserID != 0 {
		s.UserID = d.string()
	}
	s.IPAddress = d.string()
	if flags&flagIP != 0 {
		a, ok := netip.AddrFromSlice([]byte(s.IPAddress))
		if !ok {
			return nil, errMalformed
		}
		s.IPAddress = a.String()
	}
	s.UserAgent = d.string()
	if flags&flagLinkedTo != 0 {
		rec.LinkedTo = d.string()
	}
	if flags&flagClaim != 0 {
		rec.ClaimOwner = d.string()
	}
	if d.bad {
		return nil, errMalformed
	}
	if d.p != "" {
		rec.Data = []byte(d.p)
	}
	return rec, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads a record's fields from p; bad records the first field that
// did not fit, after which every read is empty.
type decoder struct {
	p   string
	bad bool
}

func (d *decoder) time() time.Time {
	n, k := binary.Varint([]byte(d.p[:min(len(d.p), binary.MaxVarintLen64)]))
	if k <= 0 || d.bad {
		d.bad = true
		return time.Time{}
	}
	d.p = d.p[k:]
	return fromMillis(n)
}

func (d *decoder) bytes(n int) string {
	if d.bad || len(d.p) < n {
		d.bad = true
		return ""
	}
	v := d.p[:n]
	d.p = d.p[n:]
	return v
}

func (d *decoder) string() string {
	var n uint64
	for i := 0; i < len(d.p) && i < binary.MaxVarintLen32 && !d.bad; i++ {
		c := d.p[i]
		n |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			d.p = d.p[i+1:]
			return d.bytes(int(min(n, math.MaxInt32)))
		}
	}
	d.bad = true
	return ""
}
