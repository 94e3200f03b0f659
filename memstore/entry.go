package memstore

import (
	"encoding/binary"
	"time"
)

// An entry is kept in an arena block (after the block's own length) as:
//
//	0..7    version, little-endian: Update compares it in place
//	8..15   expiry in Unix seconds, little-endian, and
//	16..19  its nanoseconds: reads check them without a time.Time
//	20      the key's length
//	21..    the key, checked on every lookup, so that keys whose hashes
//	        collide stay apart
//	then    the value, to the end
const (
	offVersion = 0
	offExpSec  = 8
	offExpNsec = 16
	offKeyLen  = 20
	offKey     = 21
)

// maxKey is the longest key the length byte can say.
const maxKey = 255

// entrySize is the bytes an entry of this key and value takes.
func entrySize(key string, value []byte) int { return offKey + len(key) + len(value) }

// writeEntry fills b, of entrySize bytes, with the entry of key at version
// v, expiring at exp: a copy of value, which the store owns from then on.
func writeEntry(b []byte, key string, v uint64, exp time.Time, value []byte) {
	binary.LittleEndian.PutUint64(b[offVersion:], v)
	binary.LittleEndian.PutUint64(b[offExpSec:], uint64(exp.Unix()))
	binary.LittleEndian.PutUint32(b[offExpNsec:], uint32(exp.Nanosecond()))
	b[offKeyLen] = byte(len(key))
	copy(b[offKey+copy(b[offKey:], key):], value)
}

// live reports whether the entry e has not expired at sec and nsec, a Unix
// time.
func live(e []byte, sec int64, nsec int32) bool {
	es := int64(binary.LittleEndian.Uint64(e[offExpSec:]))
	en := int32(binary.LittleEndian.Uint32(e[offExpNsec:]))
	return sec < es || sec == es && nsec < en
}

func version(e []byte) uint64 { return binary.LittleEndian.Uint64(e[offVersion:]) }

// expires returns the entry's expiry, in UTC.
func expires(e []byte) time.Time {
	sec := int64(binary.LittleEndian.Uint64(e[offExpSec:]))
	return time.Unix(sec, int64(binary.LittleEndian.Uint32(e[offExpNsec:]))).UTC()
}

// hasKey reports whether e is the entry of key.
func hasKey(e []byte, key string) bool {
	n := int(e[offKeyLen])
	return n == len(key) && string(e[offKey:offKey+n]) == key
}

// value returns the entry's value: the arena's own bytes.
func value(e []byte) []byte { return e[offKey+int(e[offKeyLen]):] }
