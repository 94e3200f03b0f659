package redisstore_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/guestpass/anonymous/redisstore"
)

// TestFrameLayout pins the frame's offsets, which the update script and
// values already stored rely on.
func TestFrameLayout(t *testing.T) {
	exp := time.UnixMilli(1_750_000_000_123)
	b := redisstore.NewFrame(0x0102030405060708, exp.UnixMilli(), []byte("value"))
	want := append([]byte{3, 1, 2, 3, 4, 5, 6, 7, 8}, binary.BigEndian.AppendUint64(nil, uint64(exp.UnixMilli()))...)
	want = append(want, "value"...)
	if !bytes.Equal(b, want) {
		t.Errorf("frame %x, want %x", b, want)
	}
}

// FuzzFrame checks that no stored value, however damaged, makes the store
// panic or read past it; that a frame it accepts is made again byte for
// byte from what it read; that a format 2 record comes back whole with its
// version; and that any value, version and expiry round-trip in a frame.
func FuzzFrame(f *testing.F) {
	rec := format2Guest(f)
	f.Add(encodeFormat2(rec, 3), uint64(1), int64(0))
	f.Add(redisstore.NewFrame(7, rec.Session.ExpiresAt.UnixMilli(), []byte("value")), uint64(1<<63), int64(-1))
	f.Add([]byte{}, uint64(0), int64(1))
	f.Add([]byte{3}, uint64(2), int64(-1<<63))
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x80}, uint64(3), int64(1<<63-1))
	f.Fuzz(func(t *testing.T, stored []byte, version uint64, ms int64) {
		e, err := redisstore.ParseFrame(stored)
		switch {
		case err != nil:
			if !errors.Is(err, redisstore.ErrMalformed) {
				t.Fatalf("ParseFrame(%q): %v, want an error wrapping errMalformed", stored, err)
			}
		case stored[0] == 3:
			if back := redisstore.NewFrame(e.Version, e.Expires.UnixMilli(), e.Value); !bytes.Equal(back, stored) {
				t.Fatalf("frame %x read as %+v, made again as %x", stored, e, back)
			}
		case stored[0] == 2:
			if !bytes.Equal(e.Value, stored) || e.Version != binary.BigEndian.Uint64(stored[1:]) {
				t.Fatalf("format 2 record %x read as %+v, want it whole and its version", stored, e)
			}
		default:
			t.Fatalf("ParseFrame accepted format %d: %+v", stored[0], e)
		}

		b := redisstore.NewFrame(version, ms, stored)
		e, err = redisstore.ParseFrame(b)
		if err != nil || e.Version != version || e.Expires.UnixMilli() != ms || !bytes.Equal(e.Value, stored) {
			t.Fatalf("frame of version %d, expiry %d, value %x read as %+v, %v", version, ms, stored, e, err)
		}
	})
}
