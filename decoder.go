package anonymous

import (
	"encoding/binary"
	"time"
	"unsafe"
)

// str returns b as a string without a copy: b is the caller's own, and
// never written again.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// decoder reads a record's fields from b. A value that ends early sets bad,
// after which every read returns zeroes: a Store may hold anything.
type decoder struct {
	b   []byte
	bad bool
}

// zeros is what a read past the end returns.
var zeros [8 * maxWrites]byte

func (d *decoder) bytes(n int) []byte {
	if d.bad || len(d.b) < n {
		d.bad = true
		return zeros[:n]
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) uvarint() uint64 {
	v, k := binary.Uvarint(d.b)
	if k <= 0 || d.bad {
		d.bad = true
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	return str(d.bytes(int(n)))
}

func (d *decoder) time() time.Time {
	sec, k := binary.Varint(d.b)
	if k <= 0 || d.bad {
		d.bad = true
		return time.Time{}
	}
	d.b = d.b[k:]
	ns := d.uvarint()
	if ns&1 == 0 {
		ns = (ns >> 1) * 1e6
	} else {
		ns >>= 1
	}
	if ns >= 1e9 {
		d.bad = true
		return time.Time{}
	}
	return time.Unix(sec, int64(ns)).UTC()
}

// timeIf reads a time when flag is set, else returns def.
func (d *decoder) timeIf(flag uint16, def time.Time) time.Time {
	if flag == 0 {
		return def
	}
	return d.time()
}

// stringIf reads a string when flag is set, else returns def.
func (d *decoder) stringIf(flag uint16, def string) string {
	if flag == 0 {
		return def
	}
	return d.string()
}
