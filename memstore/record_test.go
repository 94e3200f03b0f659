package memstore

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/storetest"
)

// shapes change a new guest's record into shapes a careless encoding, or a
// careless derivation of what it leaves out, would get wrong.
func shapes() map[string]func(r *anonymous.Record) {
	far := time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC)
	local := time.FixedZone("here", 3600)
	return map[string]func(r *anonymous.Record){
		"a lowercase ULID is not one": func(r *anonymous.Record) {
			r.User.ID = strings.ToLower(r.User.ID)
			r.Session.UserID = r.User.ID
			r.User.Email = "temp@" + r.User.ID + ".com"
			r.Session.ID = strings.ToLower(storetest.NewID())
		},
		"an id of any text": func(r *anonymous.Record) {
			r.User.ID, r.Session.UserID = "Üser "+r.User.ID+"\x00", "someone else"
			r.User.Email = "temp@" + strings.ToLower(r.User.ID) + ".com"
		},
		"the default email of another id": func(r *anonymous.Record) {
			r.User.Email = "temp@" + strings.ToLower(storetest.NewID()) + ".com"
		},
		"an email in capitals": func(r *anonymous.Record) {
			r.User.Email = "temp@" + r.User.ID + ".com"
		},
		"an empty id, email, name and session": func(r *anonymous.Record) {
			r.User.ID, r.User.Email, r.User.Name, r.Session.ID, r.Session.UserID = "", "", "", "", ""
		},
		"IPv6": func(r *anonymous.Record) { r.Session.IPAddress = "2001:db8::1" },
		"IPv4 in IPv6": func(r *anonymous.Record) {
			r.Session.IPAddress = "::ffff:192.0.2.1"
		},
		"the longest IPv6 text": func(r *anonymous.Record) {
			r.Session.IPAddress = "1234:5678:9abc:def0:1234:5678:9abc:def0"
		},
		"an address with a zone": func(r *anonymous.Record) { r.Session.IPAddress = "fe80::1%eth0" },
		"an address not in its own form": func(r *anonymous.Record) {
			r.Session.IPAddress = "2001:DB8:0::1"
		},
		"no address": func(r *anonymous.Record) { r.Session.IPAddress = "" },
		"nanoseconds and zones": func(r *anonymous.Record) {
			r.User.CreatedAt = time.Date(2024, 2, 29, 12, 0, 0, 1, local)
			r.User.UpdatedAt = r.User.CreatedAt.Add(time.Nanosecond)
			r.Session.CreatedAt = time.Date(1969, 12, 31, 23, 59, 59, 999_999_999, time.UTC)
			r.Session.UpdatedAt = time.Now() // with a monotonic reading
			r.Session.ExpiresAt = far
			r.ClaimUntil = time.Unix(-1, 5).In(local)
		},
		"zero times": func(r *anonymous.Record) {
			r.User.CreatedAt, r.User.UpdatedAt, r.Session.CreatedAt = time.Time{}, time.Time{}, time.Time{}
			r.Session.UpdatedAt = time.Time{}.Add(time.Millisecond)
		},
		"a claim without an owner": func(r *anonymous.Record) { r.ClaimUntil = time.Now().Add(time.Minute) },
		"an owner without a claim": func(r *anonymous.Record) { r.ClaimOwner = "owner" },
		"data of 8,000 bytes":      func(r *anonymous.Record) { r.Data = bytes.Repeat([]byte{0xff}, 8000) },
		"data of 8 KiB":            func(r *anonymous.Record) { r.Data = make([]byte, 8<<10) },
		"data of a megabyte":       func(r *anonymous.Record) { r.Data = bytes.Repeat([]byte("ab"), 1<<19) },
		"a long User-Agent":        func(r *anonymous.Record) { r.Session.UserAgent = strings.Repeat("ü", 300) },
		"deleted, verified and linked": func(r *anonymous.Record) {
			r.Deleted, r.User.EmailVerified, r.LinkedTo = true, true, "user"
		},
	}
}

// TestRecordRoundTrip encodes and decodes records of every shape.
func TestRecordRoundTrip(t *testing.T) {
	for name, change := range shapes() {
		t.Run(name, func(t *testing.T) {
			rec := storetest.NewRecord("", time.Now().Add(time.Hour))
			change(rec)
			enc := appendRecord(nil, rec, 7)
			buf := make([]byte, len(enc)+textSize(enc))
			n := copy(buf, enc)
			var got anonymous.Record
			decode(&got, buf, n)
			want := *rec
			want.Version = 7
			if d := storetest.Diff(&got, &want); len(d) > 0 {
				t.Errorf("decoded record differs:\n\t%s", strings.Join(d, "\n\t"))
			}
			if !hasID(enc, rec.User.ID) {
				t.Errorf("hasID(%q) = false for its own record", rec.User.ID)
			}
			for _, other := range []string{rec.User.ID + "0", strings.ToLower(rec.User.ID), strings.ToUpper(rec.User.ID), ""} {
				if other != rec.User.ID && hasID(enc, other) {
					t.Errorf("hasID(%q) = true for the record of %q", other, rec.User.ID)
				}
			}
			// textSize leaves room for all the text decode derives.
			if a := testing.AllocsPerRun(10, func() { decode(&got, buf, n) }); a != 0 {
				t.Errorf("decode allocates %v times, want 0", a)
			}
		})
	}
}

// TestRecordSize holds a new guest's record with a browser's User-Agent to
// the size the package doc counts on.
func TestRecordSize(t *testing.T) {
	rec := storetest.NewRecord("", time.Now().Add(time.Hour))
	rec.Session.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	if n := len(appendRecord(nil, rec, 1)); n > 220 {
		t.Errorf("a new guest's record takes %d bytes, want at most 220", n)
	}
	if n := len(appendRecord(nil, rec, 1)) - len(rec.Session.UserAgent); n > 100 {
		t.Errorf("a new guest's record takes %d bytes besides its User-Agent, want at most 100", n)
	}
}
