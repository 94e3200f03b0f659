package memstore

import (
	"encoding/binary"
	"net/netip"
	"time"
	"unsafe"

	"github.com/guestpass/anonymous"
	"github.com/oklog/ulid/v2"
)

// A record is encoded as:
//
//	0..7    Version, little-endian: Update compares it in place
//	8..15   Session.ExpiresAt in Unix seconds, little-endian: reads check
//	16..19  it, and its nanoseconds, without decoding the record
//	20..21  flags, little-endian
//	then    User.ID: its 16 bytes when it is a ULID, else a string
//	then    times, each a varint of Unix seconds and a uvarint of the
//	        nanoseconds (milliseconds<<1, or nanoseconds<<1 | 1):
//	        User.CreatedAt, then User.UpdatedAt, Session.CreatedAt and
//	        Session.UpdatedAt unless a flag says they equal User.CreatedAt,
//	        then ClaimUntil if there is a claim
//	then    TokenHash (32 bytes) unless a flag says it is zero
//	then    strings, each a uvarint length and its bytes: Email unless it is
//	        temp@{id}.com, Name unless it is "Anonymous", Session.ID (its 16
//	        bytes when it is a ULID), Session.UserID unless it is User.ID,
//	        IPAddress (its 4 or 16 bytes, without length, when it is an
//	        address), UserAgent, LinkedTo if any, ClaimOwner if there is a
//	        claim
//	then    Data, to the end
//
// Times keep their nanoseconds and come back in UTC. What can be derived is
// not stored, so a guest with a browser's User-Agent and no data takes
// about 220 bytes.
const (
	offVersion = 0
	offExpSec  = 8
	offExpNsec = 16
	offFlags   = 20
	headerSize = 22
)

const (
	flagEmailVerified = 1 << iota
	flagAnonymous
	flagDeleted
	flagIDULID         // User.ID is stored as a 16-byte ULID
	flagEmail          // Email is not temp@{id}.com and is stored
	flagName           // Name is not "Anonymous" and is stored
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

const (
	defaultName = "Anonymous"
	// defaultEmail is temp@{lowercase id}.com, for a ULID id.
	emailPrefix, emailSuffix = "temp@", ".com"
	defaultEmailSize         = len(emailPrefix) + ulid.EncodedSize + len(emailSuffix)
	// The longest text of an address stored in 4 or 16 bytes.
	maxIPv4Text, maxIPv6Text = len("255.255.255.255"), len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
)

// appendRecord appends rec's encoding as version v to b. Session.Token is
// not stored: TokenHash stands for it.
func appendRecord(b []byte, rec *anonymous.Record, v uint64) []byte {
	u, s := &rec.User, &rec.Session
	var flags uint16
	set := func(f uint16, on bool) {
		if on {
			flags |= f
		}
	}
	id, idULID := parseULID(u.ID)
	sid, sidULID := parseULID(s.ID)
	ip, ipOK := parseIP(s.IPAddress)
	set(flagEmailVerified, u.EmailVerified)
	set(flagAnonymous, u.IsAnonymous)
	set(flagDeleted, rec.Deleted)
	set(flagIDULID, idULID)
	set(flagEmail, !idULID || !isDefaultEmail(u.Email, u.ID))
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

	b = binary.LittleEndian.AppendUint64(b, v)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.ExpiresAt.Unix()))
	b = binary.LittleEndian.AppendUint32(b, uint32(s.ExpiresAt.Nanosecond()))
	b = binary.LittleEndian.AppendUint16(b, flags)
	if idULID {
		b = append(b, id[:]...)
	} else {
		b = appendString(b, u.ID)
	}
	b = appendTime(b, u.CreatedAt)
	if flags&flagUserUpdated != 0 {
		b = appendTime(b, u.UpdatedAt)
	}
	if flags&flagSessionCreated != 0 {
		b = appendTime(b, s.CreatedAt)
	}
	if flags&flagSessionUpdated != 0 {
		b = appendTime(b, s.UpdatedAt)
	}
	if flags&flagClaim != 0 {
		b = appendTime(b, rec.ClaimUntil)
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
	if sidULID {
		b = append(b, sid[:]...)
	} else {
		b = appendString(b, s.ID)
	}
	if flags&flagSessionUserID != 0 {
		b = appendString(b, s.UserID)
	}
	if ipOK {
		b = append(b, ip.AsSlice()...)
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

// isDefaultEmail reports whether email is temp@{lowercase id}.com, for an
// id in ASCII.
func isDefaultEmail(email, id string) bool {
	if len(email) != len(emailPrefix)+len(id)+len(emailSuffix) ||
		email[:len(emailPrefix)] != emailPrefix || email[len(email)-len(emailSuffix):] != emailSuffix {
		return false
	}
	for i := range len(id) {
		if email[len(emailPrefix)+i] != lower(id[i]) {
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

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	ns := uint64(t.Nanosecond())
	if ns%1e6 == 0 {
		return binary.AppendUvarint(b, (ns/1e6)<<1)
	}
	return binary.AppendUvarint(b, ns<<1|1)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// live reports whether the record rec has not expired at sec and nsec,
// a Unix time.
func live(rec []byte, sec int64, nsec int32) bool {
	es := int64(binary.LittleEndian.Uint64(rec[offExpSec:]))
	en := int32(binary.LittleEndian.Uint32(rec[offExpNsec:]))
	return sec < es || sec == es && nsec < en
}

func version(rec []byte) uint64 { return binary.LittleEndian.Uint64(rec[offVersion:]) }

func flagsOf(rec []byte) uint16 { return binary.LittleEndian.Uint16(rec[offFlags:]) }

// hasID reports whether rec is the record of id.
func hasID(rec []byte, id string) bool {
	if flagsOf(rec)&flagIDULID != 0 {
		if len(id) != ulid.EncodedSize {
			return false
		}
		var text [ulid.EncodedSize]byte
		_ = (*ulid.ULID)(rec[headerSize:]).MarshalTextTo(text[:])
		return string(text[:]) == id
	}
	n, k := binary.Uvarint(rec[headerSize:])
	return string(rec[headerSize+k:headerSize+k+int(n)]) == id
}

// textSize is how many bytes decode needs past a copy of rec, for the text
// of what rec holds in binary or leaves out.
func textSize(rec []byte) int {
	flags := flagsOf(rec)
	n := 0
	if flags&flagIDULID != 0 {
		n += ulid.EncodedSize
		if flags&flagEmail == 0 {
			n += defaultEmailSize
		}
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

// newRecord returns a record and n bytes for decode to fill it from, in
// one allocation when they fit one of withText's sizes (a guest without
// data fits the first): a returning guest's Get allocates once.
func newRecord(n int) (*anonymous.Record, []byte) {
	switch {
	case n <= 704-recordSize:
		return allocRecord[[704 - recordSize]byte](n)
	case n <= 1024-recordSize:
		return allocRecord[[1024 - recordSize]byte](n)
	case n <= 2048-recordSize:
		return allocRecord[[2048 - recordSize]byte](n)
	case n <= 4864-recordSize:
		return allocRecord[[4864 - recordSize]byte](n)
	}
	return new(anonymous.Record), make([]byte, n)
}

// recordSize is the size of an anonymous.Record; the sizes of withText
// are sizes the Go allocator has a class for, so none is wasted.
const recordSize = int(unsafe.Sizeof(anonymous.Record{}))

// withText is a record and the bytes its strings and data point into: T
// is a byte array.
type withText[T any] struct {
	rec  anonymous.Record
	text T
}

// allocRecord allocates a withText[T] and returns its record and the first
// n bytes of its text, capacity n.
func allocRecord[T any](n int) (*anonymous.Record, []byte) {
	p := new(withText[T])
	return &p.rec, unsafe.Slice((*byte)(unsafe.Pointer(&p.text)), unsafe.Sizeof(p.text))[:n:n]
}

// decode fills rec from the record in buf[:n], a copy that becomes rec's:
// its strings and data point into buf, and the text of what the record
// holds in binary or leaves out goes into buf[n:] (textSize bytes).
func decode(rec *anonymous.Record, buf []byte, n int) {
	d := decoder{b: buf[:n], off: headerSize}
	text := buf[n:n:len(buf)]
	flags := flagsOf(d.b)
	u, s := &rec.User, &rec.Session
	rec.Version = version(d.b)
	s.ExpiresAt = time.Unix(int64(binary.LittleEndian.Uint64(d.b[offExpSec:])), int64(binary.LittleEndian.Uint32(d.b[offExpNsec:]))).UTC()
	u.EmailVerified = flags&flagEmailVerified != 0
	u.IsAnonymous = flags&flagAnonymous != 0
	rec.Deleted = flags&flagDeleted != 0
	if flags&flagIDULID != 0 {
		u.ID, text = appendULID(text, d.bytes(16))
	} else {
		u.ID = d.string()
	}
	u.CreatedAt = d.time()
	u.UpdatedAt, s.CreatedAt, s.UpdatedAt = u.CreatedAt, u.CreatedAt, u.CreatedAt
	if flags&flagUserUpdated != 0 {
		u.UpdatedAt = d.time()
	}
	if flags&flagSessionCreated != 0 {
		s.CreatedAt = d.time()
	}
	if flags&flagSessionUpdated != 0 {
		s.UpdatedAt = d.time()
	}
	if flags&flagClaim != 0 {
		rec.ClaimUntil = d.time()
	}
	if flags&flagTokenHash != 0 {
		copy(rec.TokenHash[:], d.bytes(32))
	}
	if flags&flagEmail != 0 {
		u.Email = d.string()
	} else {
		start := len(text)
		text = append(text, emailPrefix...)
		for i := range len(u.ID) {
			text = append(text, lower(u.ID[i]))
		}
		text = append(text, emailSuffix...)
		u.Email = str(text[start:])
	}
	u.Name = defaultName
	if flags&flagName != 0 {
		u.Name = d.string()
	}
	if flags&flagSessionULID != 0 {
		s.ID, text = appendULID(text, d.bytes(16))
	} else {
		s.ID = d.string()
	}
	s.UserID = u.ID
	if flags&flagSessionUserID != 0 {
		s.UserID = d.string()
	}
	switch {
	case flags&flagIPv4 != 0:
		s.IPAddress, _ = appendIP(text, netip.AddrFrom4([4]byte(d.bytes(4))))
	case flags&flagIPv6 != 0:
		s.IPAddress, _ = appendIP(text, netip.AddrFrom16([16]byte(d.bytes(16))))
	default:
		s.IPAddress = d.string()
	}
	s.UserAgent = d.string()
	if flags&flagLinkedTo != 0 {
		rec.LinkedTo = d.string()
	}
	if flags&flagClaim != 0 {
		rec.ClaimOwner = d.string()
	}
	if d.off < n {
		// The data's capacity ends with it, so that an append copies
		// rather than writing over the text after it.
		rec.Data = d.b[d.off:n:n]
	}
}

// appendULID appends the text of the ULID b to text and returns it as a
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

// str returns b as a string without a copy: b is the caller's own, and
// never written again.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// decoder reads a record's fields in order. Records are the store's own
// encoding: a malformed one is a bug, and panics.
type decoder struct {
	b   []byte
	off int
}

func (d *decoder) bytes(n int) []byte {
	b := d.b[d.off : d.off+n]
	d.off += n
	return b
}

func (d *decoder) uvarint() uint64 {
	v, k := binary.Uvarint(d.b[d.off:])
	d.off += k
	return v
}

func (d *decoder) string() string { return str(d.bytes(int(d.uvarint()))) }

func (d *decoder) time() time.Time {
	sec, k := binary.Varint(d.b[d.off:])
	d.off += k
	ns := d.uvarint()
	if ns&1 == 0 {
		ns = (ns >> 1) * 1e6
	} else {
		ns >>= 1
	}
	return time.Unix(sec, int64(ns)).UTC()
}
