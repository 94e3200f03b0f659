package anonymous

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// recordShapes are records of every shape the package writes, each with
// what a careless encoding would lose.
func recordShapes() []*Record {
	t0 := time.UnixMilli(1764720000123).UTC()
	id := "01KBHQ9W0VYXJ5R3C2D8E7F6G5"
	guest := &Record{
		User: User{ID: id, Email: "temp@01kbhq9w0vyxj5r3c2d8e7f6g5.com", Name: defaultName, CreatedAt: t0, UpdatedAt: t0, IsAnonymous: true},
		Session: Session{ID: "01KBHQ9W0VABCDEFGHJKMNPQRS", UserID: id, ExpiresAt: t0.Add(30 * 24 * time.Hour),
			CreatedAt: t0, UpdatedAt: t0, IPAddress: "203.0.113.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)"},
		TokenHash: sha256.Sum256([]byte("token")),
	}
	withData := *guest
	withData.Data = make([]byte, 300)
	for i := range withData.Data {
		withData.Data[i] = byte(255 - i)
	}
	withData.Session.UpdatedAt = t0.Add(time.Hour + 1) // a nanosecond
	var room [8 * maxWrites]byte
	withData.writes = stamp(withData.writes, 7, &room)
	withData.writes = stamp(withData.writes, 1<<63, &room)
	full := Record{
		User: User{ID: "custom-id", Email: "guest+tag@example.com", Name: `Ünïcode "guest" 🦊`, EmailVerified: true, IsAnonymous: true,
			CreatedAt: t0.Add(-3 * time.Second), UpdatedAt: t0.Add(-2 * time.Second)},
		Session: Session{ID: "not-a-ulid", UserID: "someone-else", ExpiresAt: t0.Add(time.Minute),
			CreatedAt: t0.Add(-1500 * time.Millisecond), UpdatedAt: t0.Add(-999 * time.Millisecond),
			IPAddress: "2001:db8::1", UserAgent: "agent \"quoted\" \t"},
		TokenHash: sha256.Sum256([]byte("t")), Data: []byte(`{"cart":[1]}`),
		ClaimOwner: "owner ü", ClaimUntil: t0.Add(90*time.Second + 123*time.Nanosecond), Version: 41,
	}
	var fullRoom [8 * maxWrites]byte
	for w := range uint64(maxWrites + 3) { // past maxWrites: the oldest go
		full.writes = stamp(full.writes, w+100, &fullRoom)
	}
	zoned := *guest
	zoned.Session.IPAddress = "fe80::1%eth0" // not an address the binary form keeps
	mapped := *guest
	mapped.Session.IPAddress = "::ffff:1.2.3.4"
	noIP := *guest
	noIP.Session.IPAddress, noIP.Session.UserAgent = "", ""
	buriedRec := *guest
	bury(&buriedRec, "alice", false)
	kept := *guest
	bury(&kept, "bob", true)
	return []*Record{guest, &withData, &full, &zoned, &mapped, &noIP, &buriedRec, &kept}
}

func TestRecordRoundTrip(t *testing.T) {
	for i, rec := range recordShapes() {
		b := appendRecord(nil, rec, 0)
		got, err := decodeRecord(rec.User.ID, Entry{Value: b, Version: rec.Version})
		if err != nil {
			t.Fatalf("shape %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Errorf("shape %d: decoded\n\t%+v\nwant\n\t%+v", i, got, rec)
		}
		if !bytes.Equal(appendRecord(nil, got, 0), b) {
			t.Errorf("shape %d: encoding the decoded record gives other bytes", i)
		}
	}
}

// A guest as the middleware stores it, with a browser's User-Agent and no
// data, is small: stores hold millions.
func TestRecordSize(t *testing.T) {
	rec := recordShapes()[0]
	rec.Session.UserAgent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	if n := len(appendRecord(nil, rec, 0)); n > 230 {
		t.Errorf("a guest without data takes %d bytes, want at most 230", n)
	}
}

// Records stored by redisstore in format 2, before the package owned the
// format, as that release's encoder wrote them: a guest with data, a linked
// guest's tombstone, and one with every optional field.
var format2Records = []struct {
	hex     string
	version uint64
	check   func(*Record) string
}{
	{"020000000000000003148af69188c0ef66f6f19198dc66f6abc99bdc663c469e9d6c5875d37a43f353d4f88e61fcf812c66eee3457465a40b0da4153e0019ae374f01b52d8d73e1194e95b5f1904cb0071071f4d6f7a696c6c612f352e3020285831313b204c696e7578207838365f3634297b2263617274223a5b312c325d7d", 3,
		func(r *Record) string {
			t0 := time.UnixMilli(1764720000123).UTC()
			want := Record{
				User: User{ID: "01KBHQ9W0VYXJ5R3C2D8E7F6G5", Email: "temp@01kbhq9w0vyxj5r3c2d8e7f6g5.com", Name: "Anonymous", CreatedAt: t0, UpdatedAt: t0, IsAnonymous: true},
				Session: Session{ID: "01KBHQ9W0VABCDEFGHJKMNPQRS", UserID: "01KBHQ9W0VYXJ5R3C2D8E7F6G5", ExpiresAt: t0.Add(30 * 24 * time.Hour),
					CreatedAt: t0, UpdatedAt: t0.Add(time.Hour), IPAddress: "203.0.113.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)"},
				TokenHash: sha256.Sum256([]byte("token")), Data: []byte(`{"cart":[1,2]}`), Version: 3,
			}
			if !reflect.DeepEqual(*r, want) {
				return "got " + dump(r)
			}
			return ""
		}},
	{"0200000000000000072306f69188c0ef66ffffffffffffffffff01000000000005616c696365", 7,
		func(r *Record) string {
			if !r.Deleted || r.LinkedTo != "alice" || r.live() || r.TokenHash != [32]byte{} || r.Data != nil || !r.User.CreatedAt.IsZero() {
				return "not a linked guest's tombstone: " + dump(r)
			}
			return ""
		}},
	{"0200000000000000021bf3f6abc99bdc66f6f19198dc66c6819298dc6696919298dc66b69b9998dc66d8cc7aed3851ac3338fcc15df3b6807b89125837f77a75b9ecb13ed2afe3b49f116775657374406578616d706c652e636f6d09c39c6ec3af636f64650a6e6f742d612d756c6964056f746865721020010db800000000000000000000000100076f776e65722d31", 2,
		func(r *Record) string {
			t0 := time.UnixMilli(1764720000123).UTC()
			u, s := r.User, r.Session
			if u.Email != "guest@example.com" || u.Name != "Ünïcode" || !u.EmailVerified || !u.UpdatedAt.Equal(t0.Add(time.Second)) ||
				s.ID != "not-a-ulid" || s.UserID != "other" || s.IPAddress != "2001:db8::1" || s.UserAgent != "" ||
				!s.CreatedAt.Equal(t0.Add(2*time.Second)) || !s.ExpiresAt.Equal(t0.Add(time.Hour)) ||
				r.ClaimOwner != "owner-1" || !r.ClaimUntil.Equal(t0.Add(time.Minute)) || r.Data != nil {
				return "fields lost: " + dump(r)
			}
			return ""
		}},
}

func dump(r *Record) string { return fmt.Sprintf("%+v", *r) }

// Guests stored in format 2 keep working: they decode field for field, and
// their next write is in format 3.
func TestFormat2Records(t *testing.T) {
	for i, tc := range format2Records {
		v, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := decodeRecord("01KBHQ9W0VYXJ5R3C2D8E7F6G5", Entry{Value: v, Version: tc.version})
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if msg := tc.check(rec); msg != "" {
			t.Errorf("record %d: %s", i, msg)
		}
		b := appendRecord(nil, rec, 0)
		if b[0] != recordFormat {
			t.Errorf("record %d is written back in format %d", i, b[0])
		}
		if again, err := decodeRecord(rec.User.ID, Entry{Value: b, Version: tc.version}); err != nil || !reflect.DeepEqual(again, rec) {
			t.Errorf("record %d written in format 3 reads back as %+v, %v", i, again, err)
		}
	}
}

// A value the package cannot read (cut short, of another format, another
// program's) is errMalformed, never a panic or a record of garbage.
func TestMalformedRecords(t *testing.T) {
	var valid [][]byte
	for _, rec := range recordShapes() {
		valid = append(valid, appendRecord(nil, rec, 0))
	}
	for _, tc := range format2Records {
		v, _ := hex.DecodeString(tc.hex)
		valid = append(valid, v)
	}
	for i, v := range valid {
		// Cut before the data (a record's data runs to the end, so a cut
		// inside it is still a record).
		rec, _ := decodeRecord("id", Entry{Value: v})
		end := len(v) - len(rec.Data)
		for n := range end {
			if _, err := decodeRecord("id", Entry{Value: v[:n]}); !errors.Is(err, errMalformed) {
				t.Fatalf("value %d cut to %d of %d bytes: %v, want errMalformed", i, n, end, err)
			}
		}
	}
	for _, v := range []string{"", "\x00", "\x04abc", "{\"json\":1}", "\x03\x00\x00\x09"} {
		if _, err := decodeRecord("id", Entry{Value: []byte(v)}); !errors.Is(err, errMalformed) {
			t.Errorf("value %q: %v, want errMalformed", v, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, rec := range recordShapes() {
		f.Add(appendRecord(nil, rec, 0))
	}
	for _, tc := range format2Records {
		v, _ := hex.DecodeString(tc.hex)
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		rec, err := decodeRecord("01KBHQ9W0VYXJ5R3C2D8E7F6G5", Entry{Value: bytes.Clone(v)})
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v is not errMalformed", err)
			}
			return
		}
		// Whatever decodes is written back as a record that decodes the same.
		again, err := decodeRecord(rec.User.ID, Entry{Value: appendRecord(nil, rec, 0)})
		if err != nil {
			t.Fatalf("re-encoded record: %v", err)
		}
		if !reflect.DeepEqual(again, rec) {
			t.Fatalf("re-encoded record differs:\n\t%+v\n\t%+v", again, rec)
		}
	})
}

// A write's id stays among a record's last maxWrites writes, and no longer.
func TestWriteIDs(t *testing.T) {
	var rec Record
	var room [8 * maxWrites]byte
	for w := range uint64(maxWrites) {
		rec.writes = stamp(rec.writes, w+1, &room)
	}
	for w := range uint64(maxWrites) {
		if !rec.wrote(w + 1) {
			t.Fatalf("write %d forgotten among the last %d", w+1, maxWrites)
		}
	}
	rec.writes = stamp(rec.writes, 99, &room)
	if rec.wrote(1) || !rec.wrote(2) || !rec.wrote(99) {
		t.Fatalf("after one more write: %v", rec.writes)
	}
	if rec.wrote(0) {
		t.Fatal("write id 0 is recognised")
	}

	// A write id appendRecord adds is stored as stamp adds it, full or not.
	for _, n := range []int{0, 3, maxWrites} {
		rec := *recordShapes()[0]
		var room, room2 [8 * maxWrites]byte
		for w := range uint64(n) {
			rec.writes = stamp(rec.writes, w+1, &room)
		}
		stamped := rec
		stamped.writes = stamp(rec.writes, 42, &room2)
		if !bytes.Equal(appendRecord(nil, &rec, 42), appendRecord(nil, &stamped, 0)) {
			t.Errorf("%d writes: appendRecord's write id is not stored as stamp's", n)
		}
		if rec.wrote(42) {
			t.Errorf("%d writes: appendRecord stamped the record itself", n)
		}
	}
}
