package anonymous

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/oklog/ulid/v2"
)

// A record is stored as one Entry.Value, in format 3:
//
//	0       the format, recordFormat
//	1..2    flags, little-endian
//	3       n, how many write ids follow (at most maxWrites)
//	then    the n write ids, 8 bytes each, little-endian, oldest first
//	then    times, each a varint of Unix seconds and a uvarint of the
//	        nanoseconds (milliseconds<<1, or nanoseconds<<1 | 1):
//	        Session.ExpiresAt, User.CreatedAt, then User.UpdatedAt,
//	        Session.CreatedAt and Session.UpdatedAt unless a flag says they
//	        equal User.CreatedAt, then ClaimUntil if there is a claim
//	then    TokenHash (32 bytes) unless a flag says it is zero
//	then    strings, each a uvarint length and its bytes: Email unless it
//	        is the default temp@{id}.com, Name unless it is "Anonymous",
//	        Session.ID (its 16 bytes when it is a ULID), Session.UserID
//	        unless it is User.ID, IPAddress (its 4 or 16 bytes, without
//	        length, when it is an address), UserAgent, LinkedTo if any,
//	        ClaimOwner if there is a claim
//	then    Data, to the end
//
// User.ID is not stored (the key names it), nor Version (the Store keeps
// it), nor what can be derived, so a guest with a browser's User-Agent and
// no data takes about 170 bytes. Format 2, redisstore's before this one, is
// read too (record2.go); every write is in format 3.
const (
	recordFormat = 3
	maxWrites    = 8
	headerSize   = 4
)

const (
	flagEmailVerified = 1 << iota
	flagAnonymous
	flagDeleted
	flagEmail          // Email is not the default and is stored
	flagName           // Name is not defaultName and is stored
	flagSessionULID    // Session.ID is stored as a 16-byte ULID
	flagSessionUserID  // Session.UserID differs from User.ID and is stored
	flagIPv4           // IPAddress is stored as 4 bytes
	flagIPv6           // IPAddress is stored as 16 bytes
	flagUserUpdated    // User.UpdatedAt differs from User.CreatedAt and is stored
	flagSessionCreated // likewise Session.CreatedAt
	flagSessionUpdated // likewise Session.UpdatedAt
	flagClaim          // ClaimUntil and ClaimOwner are stored
	flagTokenHash      // TokenHash is not zero and is stored
	flagLinkedTo       // LinkedTo is stored
)

// errMalformed is a stored value the package cannot read: another
// program's, a format newer than this code knows, or a damaged one.
var errMalformed = errors.New("anonymous: malformed record in the store")

// The longest text of an address stored in 4 or 16 bytes.
const maxIPv4Text, maxIPv6Text = len("255.255.255.255"), len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")

// appendRecord appends rec's encoding to b, with write id w added to its
// writes unless w is 0 (see stamp). Session.Token, User.ID and Version are
// not stored.
func appendRecord(b []byte, rec *Record, w uint64) []byte {
	u, s := &rec.User, &rec.Session
	var flags uint16
	set := func(f uint16, on bool) {
		if on {
			flags |= f
		}
	}
	sid, sidULID := parseULID(s.ID)
	ip, ipOK := parseIP(s.IPAddress)
	set(flagEmailVerified, u.EmailVerified)
	set(flagAnonymous, u.IsAnonymous)
	set(flagDeleted, rec.Deleted)
	set(flagEmail, !isDefaultEmail(u.Email, u.ID))
	set(flagName, u.Name != defaultName)
	set(flagSessionULID, sidULID)
	set(flagSessionUserID, s.UserID != u.ID)
	set(flagIPv4, ipOK && ip.Is4())
	set(flagIPv6, ipOK && ip.Is6())
	set(flagUserUpdated, !u.UpdatedAt.Equal(u.CreatedAt))
	set(flagSessionCreated, !s.CreatedAt.Equal(u.CreatedAt))
	set(flagSessionUpdated, !s.UpdatedAt.Equal(u.CreatedAt))
	set(flagClaim, rec.ClaimOwner != "" || !rec.ClaimUntil.IsZero())
	set(flagTokenHash, rec.TokenHash != [32]byte{})
	set(flagLinkedTo, rec.LinkedTo != "")

	b = append(b, recordFormat)
	b = binary.LittleEndian.AppendUint16(b, flags)
	writes := rec.writes
	if w != 0 {
		var room [8 * maxWrites]byte
		writes = stamp(writes, w, &room)
	}
	b = append(b, byte(len(writes)/8))
	b = append(b, writes...)
	b = appendTime(b, s.ExpiresAt)
	b = appendTime(b, u.CreatedAt)
	b = appendTimeIf(b, flags&flagUserUpdated, u.UpdatedAt)
	b = appendTimeIf(b, flags&flagSessionCreated, s.CreatedAt)
	b = appendTimeIf(b, flags&flagSessionUpdated, s.UpdatedAt)
	b = appendTimeIf(b, flags&flagClaim, rec.ClaimUntil)
	if flags&flagTokenHash != 0 {
		b = append(b, rec.TokenHash[:]...)
	}
	b = appendStringIf(b, flags&flagEmail, u.Email)
	b = appendStringIf(b, flags&flagName, u.Name)
	if sidULID {
		b = append(b, sid[:]...)
	} else {
		b = appendString(b, s.ID)
	}
	b = appendStringIf(b, flags&flagSessionUserID, s.UserID)
	if ipOK {
		b = append(b, ip.AsSlice()...)
	} else {
		b = appendString(b, s.IPAddress)
	}
	b = appendString(b, s.UserAgent)
	b = appendStringIf(b, flags&flagLinkedTo, rec.LinkedTo)
	b = appendStringIf(b, flags&flagClaim, rec.ClaimOwner)
	return append(b, rec.Data...)
}

// appendTimeIf appends t when flag is set.
func appendTimeIf(b []byte, flag uint16, t time.Time) []byte {
	if flag == 0 {
		return b
	}
	return appendTime(b, t)
}

// appendStringIf appends s when flag is set.
func appendStringIf(b []byte, flag uint16, s string) []byte {
	if flag == 0 {
		return b
	}
	return appendString(b, s)
}

// decodeRecord returns the record of guest id stored as e, in one
// allocation with the text of its strings. Its strings and data share
// e.Value, which must be the caller's own and never written again.
func decodeRecord(id string, e Entry) (*Record, error) {
	p := new(withText)
	if err := decodeInto(&p.rec, p.text[:0], id, e); err != nil {
		return nil, err
	}
	return &p.rec, nil
}

// withText is a record and room for the text decodeInto makes.
type withText struct {
	rec  Record
	text [recordText]byte
}

// recordText is the most text decodeInto makes for a guest's id, a ULID:
// the default email, a session id and an IPv6 address.
const recordText = len(defaultEmailPrefix) + ulid.EncodedSize + len(defaultEmailSuffix) + ulid.EncodedSize + maxIPv6Text

// decodeInto fills rec with the record of guest id
// stored as e. The text of what the value holds in binary or leaves out
// goes into text's spare capacity, or a new allocation if it has too
// little.
func decodeInto(rec *Record, text []byte, id string, e Entry) error {
	*rec = Record{}
	v := e.Value
	if len(v) > 0 && v[0] == format2 {
		return decodeFormat2(rec, id, e)
	}
	if len(v) < headerSize || v[0] != recordFormat || int(v[3]) > maxWrites {
		return errMalformed
	}
	flags := binary.LittleEndian.Uint16(v[1:])
	if n := textSize(flags, id); cap(text)-len(text) < n {
		text = make([]byte, 0, n)
	}
	d := decoder{b: v[headerSize:]}
	if n := 8 * int(v[3]); n > 0 {
		rec.writes = d.bytes(n)[:n:n]
	}
	u, s := &rec.User, &rec.Session
	rec.Version = e.Version
	u.ID = id
	u.EmailVerified = flags&flagEmailVerified != 0
	u.IsAnonymous = flags&flagAnonymous != 0
	rec.Deleted = flags&flagDeleted != 0
	s.ExpiresAt = d.time()
	u.CreatedAt = d.time()
	u.UpdatedAt = d.timeIf(flags&flagUserUpdated, u.CreatedAt)
	s.CreatedAt = d.timeIf(flags&flagSessionCreated, u.CreatedAt)
	s.UpdatedAt = d.timeIf(flags&flagSessionUpdated, u.CreatedAt)
	rec.ClaimUntil = d.timeIf(flags&flagClaim, time.Time{})
	if flags&flagTokenHash != 0 {
		copy(rec.TokenHash[:], d.bytes(32))
	}
	if flags&flagEmail != 0 {
		u.Email = d.string()
	} else {
		u.Email, text = appendDefaultEmail(text, id)
	}
	u.Name = d.stringIf(flags&flagName, defaultName)
	if flags&flagSessionULID != 0 {
		s.ID, text = appendULID(text, d.bytes(16))
	} else {
		s.ID = d.string()
	}
	s.UserID = d.stringIf(flags&flagSessionUserID, id)
	s.IPAddress = d.ip(flags, text)
	s.UserAgent = d.string()
	rec.LinkedTo = d.stringIf(flags&flagLinkedTo, "")
	rec.ClaimOwner = d.stringIf(flags&flagClaim, "")
	if d.bad {
		return errMalformed
	}
	if len(d.b) > 0 {
		// The data's capacity ends with it, so that an append copies.
		rec.Data = d.b[:len(d.b):len(d.b)]
	}
	return nil
}

// appendDefaultEmail appends temp@{id in lower case}.com to text, and
// returns it as a string too.
func appendDefaultEmail(text []byte, id string) (string, []byte) {
	start := len(text)
	text = append(text, defaultEmailPrefix...)
	for i := range len(id) {
		text = append(text, lower(id[i]))
	}
	text = append(text, defaultEmailSuffix...)
	return str(text[start:]), text
}

// ip reads the session's address: 4 or 16 bytes, written as text into
// text's spare room, or a string, as flags say.
func (d *decoder) ip(flags uint16, text []byte) string {
	var a string
	switch {
	case flags&flagIPv4 != 0:
		a, _ = appendIP(text, netip.AddrFrom4([4]byte(d.bytes(4))))
	case flags&flagIPv6 != 0:
		a, _ = appendIP(text, netip.AddrFrom16([16]byte(d.bytes(16))))
	default:
		a = d.string()
	}
	return a
}

// textSize is how many bytes of text decodeRecord needs for what a record
// with these flags holds in binary or leaves out.
func textSize(flags uint16, id string) int {
	n := 0
	if flags&flagEmail == 0 {
		n += len(defaultEmailPrefix) + len(id) + len(defaultEmailSuffix)
	}
	if flags&flagSessionULID != 0 {
		n += ulid.EncodedSize
	}
	switch {
	case flags&flagIPv4 != 0:
		n += maxIPv4Text
	case flags&flagIPv6 != 0:
		n += maxIPv6Text
	}
	return n
}

// isDefaultEmail reports whether email is temp@{id in lower case}.com.
func isDefaultEmail(email, id string) bool {
	p, s := defaultEmailPrefix, defaultEmailSuffix
	if len(email) != len(p)+len(id)+len(s) || email[:len(p)] != p || email[len(email)-len(s):] != s {
		return false
	}
	for i := range len(id) {
		if email[len(p)+i] != lower(id[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// parseULID returns s as a ULID when s is one in its canonical text, the
// text it decodes back to.
func parseULID(s string) (ulid.ULID, bool) {
	u, err := ulid.ParseStrict(s)
	if err != nil {
		return u, false
	}
	var text [ulid.EncodedSize]byte
	_ = u.MarshalTextTo(text[:]) // fails only for a short buffer
	return u, string(text[:]) == s
}

// parseIP returns s as an address when s is one in the text it formats
// back to, without a zone.
func parseIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return a, false
	}
	var text [64]byte
	return a, string(a.AppendTo(text[:0])) == s
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	ns := uint64(t.Nanosecond())
	if ns%1e6 == 0 {
		return binary.AppendUvarint(b, (ns/1e6)<<1)
	}
	return binary.AppendUvarint(b, ns<<1|1)
}

// appendULID appends the text of the ULID b to text, and returns it as a
// string too.
func appendULID(text, b []byte) (string, []byte) {
	start := len(text)
	text = text[:start+ulid.EncodedSize]
	_ = (*ulid.ULID)(b).MarshalTextTo(text[start:])
	return str(text[start:]), text
}

func appendIP(text []byte, a netip.Addr) (string, []byte) {
	start := len(text)
	text = a.AppendTo(text)
	return str(text[start:]), text
}
