package redisstore

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/redis/go-redis/v9"
)

// A guest's value is one binary string. Its fixed header sits at known
// offsets, so the Lua scripts patch it in place (SETRANGE) without decoding:
//
//	0      state: stateLive, stateRevoked; a deleted guest's whole value is stateDeleted
//	1..8   Session.ExpiresAt, Unix nanoseconds, big-endian
//	9..16  Session.UpdatedAt, Unix nanoseconds, big-endian
//	17..48 TokenHash
//	49..52 offset of LinkedTo, which runs to the end of the value
//	53     flags
//	54..61 User.CreatedAt
//	then   User.UpdatedAt and Session.CreatedAt unless a flag says they equal
//	       User.CreatedAt; Email, Name, Session.ID, Session.UserID (unless a
//	       flag says it equals User.ID), IPAddress, UserAgent, each as a
//	       uvarint length and its bytes; then LinkedTo.
//
// User.ID is not stored: the key names it.
const (
	stateLive    = 'g'
	stateRevoked = 'r'
	stateDeleted = 'x'

	offExpires = 1
	offUpdated = 9
	offHash    = 17
	offTail    = 49
	offFlags   = 53
	offCreated = 54
	headerSize = 62
)

const (
	flagEmailVerified = 1 << iota
	flagAnonymous
	flagUserUpdated    // User.UpdatedAt differs from User.CreatedAt and is stored
	flagSessionCreated // Session.CreatedAt differs from User.CreatedAt and is stored
	flagSessionUserID  // Session.UserID differs from User.ID and is stored
)

var errMalformed = errors.New("redisstore: malformed record")

// script returns a Lua script with the record's layout filled in: {{live}},
// {{revoked}} and {{deleted}} are the state bytes, {{expires}}, {{hash}} and
// {{tail}} the 0-based offsets of the header's fields.
func script(src string) *redis.Script {
	return redis.NewScript(strings.NewReplacer(
		"{{live}}", string(rune(stateLive)),
		"{{revoked}}", string(rune(stateRevoked)),
		"{{deleted}}", string(rune(stateDeleted)),
		"{{expires}}", strconv.Itoa(offExpires),
		"{{hash}}", strconv.Itoa(offHash),
		"{{tail}}", strconv.Itoa(offTail),
	).Replace(src))
}

// zeroTime stands for time.Time{}, which has no Unix nanosecond form.
const zeroTime = math.MinInt64

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return zeroTime
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == zeroTime {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// encode returns rec's stored form. Session.Token is never written:
// TokenHash stands for it.
func encode(rec *anonymous.Record) ([]byte, error) {
	u, s := &rec.User, &rec.Session
	var flags byte
	if u.EmailVerified {
		flags |= flagEmailVerified
	}
	if u.IsAnonymous {
		flags |= flagAnonymous
	}
	if !u.UpdatedAt.Equal(u.CreatedAt) {
		flags |= flagUserUpdated
	}
	if !s.CreatedAt.Equal(u.CreatedAt) {
		flags |= flagSessionCreated
	}
	if s.UserID != u.ID {
		flags |= flagSessionUserID
	}
	n := headerSize + 16 + 6*binary.MaxVarintLen16 + len(u.Email) + len(u.Name) + len(s.ID) +
		len(s.UserID) + len(s.IPAddress) + len(s.UserAgent) + len(rec.LinkedTo)
	b := make([]byte, headerSize, n)
	b[0] = stateLive
	binary.BigEndian.PutUint64(b[offExpires:], uint64(nanos(s.ExpiresAt)))
	binary.BigEndian.PutUint64(b[offUpdated:], uint64(nanos(s.UpdatedAt)))
	copy(b[offHash:], rec.TokenHash[:])
	b[offFlags] = flags
	binary.BigEndian.PutUint64(b[offCreated:], uint64(nanos(u.CreatedAt)))
	if flags&flagUserUpdated != 0 {
		b = binary.BigEndian.AppendUint64(b, uint64(nanos(u.UpdatedAt)))
	}
	if flags&flagSessionCreated != 0 {
		b = binary.BigEndian.AppendUint64(b, uint64(nanos(s.CreatedAt)))
	}
	b = appendString(b, u.Email)
	b = appendString(b, u.Name)
	b = appendString(b, s.ID)
	if flags&flagSessionUserID != 0 {
		b = appendString(b, s.UserID)
	}
	b = appendString(b, s.IPAddress)
	b = appendString(b, s.UserAgent)
	if uint64(len(b)) > math.MaxUint32 {
		return nil, errors.New("redisstore: record is over 4 GiB")
	}
	binary.BigEndian.PutUint32(b[offTail:], uint32(len(b)))
	if rec.LinkedTo != "" {
		b[0] = stateRevoked // a guest kept after its link
	}
	return append(b, rec.LinkedTo...), nil
}

// decode parses a stored value of guest id. The record's strings share v's
// memory, so a Get costs one allocation beyond the reply itself.
func decode(id, v string) (*anonymous.Record, error) {
	if len(v) < headerSize || (v[0] != stateLive && v[0] != stateRevoked) {
		return nil, errMalformed
	}
	tail := int(v[offTail])<<24 | int(v[offTail+1])<<16 | int(v[offTail+2])<<8 | int(v[offTail+3])
	if tail < headerSize || tail > len(v) {
		return nil, errMalformed
	}
	flags := v[offFlags]
	rec := &anonymous.Record{}
	u, s := &rec.User, &rec.Session
	u.ID = id
	u.EmailVerified = flags&flagEmailVerified != 0
	u.IsAnonymous = flags&flagAnonymous != 0
	s.ExpiresAt = fromNanos(int64(be64(v[offExpires:])))
	s.UpdatedAt = fromNanos(int64(be64(v[offUpdated:])))
	copy(rec.TokenHash[:], v[offHash:offHash+32])
	u.CreatedAt = fromNanos(int64(be64(v[offCreated:])))
	u.UpdatedAt, s.CreatedAt = u.CreatedAt, u.CreatedAt
	p := v[headerSize:tail]
	var ok bool
	if flags&flagUserUpdated != 0 {
		if len(p) < 8 {
			return nil, errMalformed
		}
		u.UpdatedAt, p = fromNanos(int64(be64(p))), p[8:]
	}
	if flags&flagSessionCreated != 0 {
		if len(p) < 8 {
			return nil, errMalformed
		}
		s.CreatedAt, p = fromNanos(int64(be64(p))), p[8:]
	}
	s.UserID = id
	fields := [...]*string{&u.Email, &u.Name, &s.ID, &s.UserID, &s.IPAddress, &s.UserAgent}
	for i, f := range fields {
		if i == 3 && flags&flagSessionUserID == 0 {
			continue
		}
		if *f, p, ok = readString(p); !ok {
			return nil, errMalformed
		}
	}
	if len(p) != 0 {
		return nil, errMalformed
	}
	rec.LinkedTo = v[tail:]
	return rec, nil
}

// be64 reads a big-endian uint64 from the start of s without copying it.
func be64(s string) uint64 {
	_ = s[7]
	return uint64(s[7]) | uint64(s[6])<<8 | uint64(s[5])<<16 | uint64(s[4])<<24 |
		uint64(s[3])<<32 | uint64(s[2])<<40 | uint64(s[1])<<48 | uint64(s[0])<<56
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readString(p string) (string, string, bool) {
	var n uint64
	for i := 0; i < len(p) && i < binary.MaxVarintLen16; i++ {
		c := p[i]
		n |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			p = p[i+1:]
			if n > uint64(len(p)) {
				return "", "", false
			}
			return p[:n], p[n:], true
		}
	}
	return "", "", false
}
