package redisstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/guestpass/anonymous"
)

// A stored value is a frame: a fixed header and the entry's value.
//
//	0       format, frameFormat
//	1..8    version, big-endian: the update script compares it in place
//	9..16   expiry in Unix milliseconds, big-endian (two's complement)
//	17..    the value, to the end
//
// Values written before frames (format 2, a guest record the store
// encoded itself) share the version's offset, so one update script serves
// both. Such a value has its expiry as a varint at offset 11; Get returns
// it whole as the entry's value, which package anonymous decodes, and the
// next Update writes a frame.
const (
	frameFormat  = 3
	legacyFormat = 2
	offVersion   = 1
	offExpires   = 9
	frameHeader  = 17
	// legacyExpires is where format 2 keeps Session.ExpiresAt as a varint
	// of Unix milliseconds, after its two bytes of flags.
	legacyExpires = 11
)

// errMalformed is returned (wrapped) for a stored value that is neither a
// frame nor a format 2 record, or is cut short.
var errMalformed = errors.New("redisstore: malformed stored value")

// newFrame returns the frame of value as version v, expiring at ms (Unix
// milliseconds): a new buffer, so the caller's value is copied.
func newFrame(v uint64, ms int64, value []byte) []byte {
	b := make([]byte, frameHeader+len(value))
	b[0] = frameFormat
	binary.BigEndian.PutUint64(b[offVersion:], v)
	binary.BigEndian.PutUint64(b[offExpires:], uint64(ms))
	copy(b[frameHeader:], value)
	return b
}

// parseFrame reads a stored value. The entry's Value shares b's memory:
// the frame's value for format 3, all of b for format 2.
func parseFrame(b []byte) (anonymous.Entry, error) {
	if len(b) == 0 {
		return anonymous.Entry{}, errMalformed
	}
	switch b[0] {
	case frameFormat:
		if len(b) < frameHeader {
			return anonymous.Entry{}, errMalformed
		}
		return anonymous.Entry{
			Value:   b[frameHeader:],
			Version: binary.BigEndian.Uint64(b[offVersion:]),
			Expires: time.UnixMilli(int64(binary.BigEndian.Uint64(b[offExpires:]))),
		}, nil
	case legacyFormat:
		if len(b) <= legacyExpires {
			return anonymous.Entry{}, errMalformed
		}
		ms, n := binary.Varint(b[legacyExpires:])
		if n <= 0 {
			return anonymous.Entry{}, errMalformed
		}
		return anonymous.Entry{
			Value:   b,
			Version: binary.BigEndian.Uint64(b[offVersion:]),
			Expires: time.UnixMilli(ms),
		}, nil
	}
	return anonymous.Entry{}, errMalformed
}
