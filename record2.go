package anonymous

import (
	"encoding/binary"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// Format 2 is how redisstore stored records before the package owned the
// format. It is read, so that guests stored by an older release keep
// working after an upgrade; every write is in format 3, so a guest's next
// write upgrades its record.
//
//	0      format, format2
//	1..8   the version, big-endian (the Store's, which Entry.Version gives)
//	9..10  flags, big-endian
//	then   times in Unix milliseconds, as varints: Session.ExpiresAt,
//	       User.CreatedAt, then Session.UpdatedAt, User.UpdatedAt,
//	       Session.CreatedAt and ClaimUntil unless a flag says they equal
//	       User.CreatedAt (or, for ClaimUntil, that there is no claim);
//	       math.MinInt64 stands for the zero time
//	then   TokenHash (32 bytes) unless a flag says it is zero
//	then   Email unless it is the default, Name unless it is "Anonymous",
//	       Session.ID (a 16-byte ULID when a flag says so), Session.UserID
//	       unless it is User.ID, IPAddress (4 or 16 bytes when a flag says
//	       so), UserAgent, LinkedTo, ClaimOwner: each a uvarint length and
//	       its bytes, absent when a flag says so
//	then   Data, to the end
const (
	format2     = 2
	header2Size = 11
)

const (
	flag2EmailVerified = 1 << iota
	flag2Anonymous
	flag2Deleted
	flag2SessionUpdated
	flag2UserUpdated
	flag2SessionCreated
	flag2Claim
	flag2TokenHash
	flag2Email
	flag2Name
	flag2SessionULID
	flag2SessionUserID
	flag2IP
	flag2LinkedTo
)

// decodeFormat2 reads a format-2 record of guest id. It allocates more than
// format 3 does: it is read once per guest, before the guest's next write
// replaces it.
func decodeFormat2(rec *Record, id string, e Entry) error {
	v := e.Value
	if len(v) < header2Size {
		return errMalformed
	}
	flags := binary.BigEndian.Uint16(v[9:])
	d := decoder{b: v[header2Size:]}
	rec.Version = e.Version
	u, s := &rec.User, &rec.Session
	u.ID = id
	u.EmailVerified = flags&flag2EmailVerified != 0
	u.IsAnonymous = flags&flag2Anonymous != 0
	rec.Deleted = flags&flag2Deleted != 0
	s.ExpiresAt = d.millis()
	u.CreatedAt = d.millis()
	s.UpdatedAt = d.millisIf(flags&flag2SessionUpdated, u.CreatedAt)
	u.UpdatedAt = d.millisIf(flags&flag2UserUpdated, u.CreatedAt)
	s.CreatedAt = d.millisIf(flags&flag2SessionCreated, u.CreatedAt)
	rec.ClaimUntil = d.millisIf(flags&flag2Claim, time.Time{})
	if flags&flag2TokenHash != 0 {
		copy(rec.TokenHash[:], d.bytes(32))
	}
	if flags&flag2Email != 0 {
		u.Email = d.string()
	} else {
		u.Email = defaultEmailPrefix + strings.ToLower(id) + defaultEmailSuffix
	}
	u.Name = d.stringIf(flags&flag2Name, defaultName)
	if flags&flag2SessionULID != 0 {
		s.ID = ulid.ULID(d.bytes(16)).String()
	} else {
		s.ID = d.string()
	}
	s.UserID = d.stringIf(flags&flag2SessionUserID, id)
	s.IPAddress = d.string()
	if flags&flag2IP != 0 {
		a, ok := netip.AddrFromSlice([]byte(s.IPAddress))
		if !ok {
			return errMalformed
		}
		s.IPAddress = a.String()
	}
	s.UserAgent = d.string()
	rec.LinkedTo = d.stringIf(flags&flag2LinkedTo, "")
	rec.ClaimOwner = d.stringIf(flags&flag2Claim, "")
	if d.bad {
		return errMalformed
	}
	if len(d.b) > 0 {
		rec.Data = d.b[:len(d.b):len(d.b)]
	}
	return nil
}

// millisIf reads a format-2 time when flag is set, else returns def.
func (d *decoder) millisIf(flag uint16, def time.Time) time.Time {
	if flag == 0 {
		return def
	}
	return d.millis()
}

// millis reads a format-2 time.
func (d *decoder) millis() time.Time {
	n, k := binary.Varint(d.b)
	if k <= 0 || d.bad {
		d.bad = true
		return time.Time{}
	}
	d.b = d.b[k:]
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}
