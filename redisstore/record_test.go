package redisstore

import (
	"crypto/sha256"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
)

// sampleRecord is a guest as the middleware makes it, with a typical
// browser's User-Agent.
func sampleRecord(id string, now time.Time) *anonymous.Record {
	return &anonymous.Record{
		User: anonymous.User{
			ID: id, Email: "temp@" + strings.ToLower(id) + ".com", Name: "Anonymous",
			CreatedAt: now, UpdatedAt: now, IsAnonymous: true,
		},
		Session: anonymous.Session{
			ID: "01J0000000SESSION000000000", UserID: id, ExpiresAt: now.Add(30 * 24 * time.Hour),
			CreatedAt: now, UpdatedAt: now, IPAddress: "203.0.113.7",
			UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		},
		TokenHash: sha256.Sum256([]byte(id + ".secret")),
	}
}

func TestEncodeDecode(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 891_000_000, time.UTC) // milliseconds are kept

	base := sampleRecord("01J00000000000000000000000", now)
	tests := []struct {
		name   string
		change func(r *anonymous.Record)
	}{
		{"fresh guest", func(*anonymous.Record) {}},
		{"touched", func(r *anonymous.Record) {
			r.Session.UpdatedAt = now.Add(time.Hour)
			r.Session.ExpiresAt = now.Add(31 * 24 * time.Hour)
		}},
		{"all fields differ", func(r *anonymous.Record) {
			r.User.UpdatedAt = now.Add(time.Minute)
			r.User.EmailVerified = true
			r.User.IsAnonymous = false
			r.User.Email, r.User.Name = "guest-7@example.com", "Curious Otter"
			r.Session.CreatedAt = now.Add(time.Second)
			r.Session.UserID = "someone-else"
			r.Session.ID = "not-a-ulid"
			r.Session.IPAddress = "2001:db8::7"
			r.LinkedTo = "user-42"
			r.ClaimOwner, r.ClaimUntil = "owner-1", now.Add(time.Minute)
			r.Data = []byte(`{"cart":[1,2,3]}`)
			r.Version = 9
		}},
		{"a deleted guest's record", func(r *anonymous.Record) {
			*r = anonymous.Record{
				User:     anonymous.User{ID: r.User.ID, IsAnonymous: true},
				Session:  anonymous.Session{UserID: r.User.ID, ExpiresAt: r.Session.ExpiresAt},
				LinkedTo: "user-9", Deleted: true, Version: 3,
			}
		}},
		{"addresses kept as written", func(r *anonymous.Record) {
			r.Session.IPAddress = "2001:DB8::1" // not canonical: kept as a string
		}},
		{"a mapped IPv4 address", func(r *anonymous.Record) {
			r.Session.IPAddress = "::ffff:192.0.2.1"
		}},
		{"empty strings and zero times", func(r *anonymous.Record) {
			r.User.Email, r.User.Name, r.Session.ID, r.Session.IPAddress, r.Session.UserAgent = "", "", "", "", ""
			r.User.CreatedAt, r.User.UpdatedAt, r.Session.CreatedAt, r.Session.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		}},
		{"long strings", func(r *anonymous.Record) {
			r.Session.UserAgent = strings.Repeat("u", 5000)
			r.User.Name = strings.Repeat("é", 300)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := *base
			tt.change(&want)
			v := encode(&want, want.Version)
			got, err := decode(want.User.ID, string(v))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, &want) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, &want)
			}
		})
	}
}

func TestEncodeNeverStoresToken(t *testing.T) {
	rec := sampleRecord("01J00000000000000000000000", time.Now())
	rec.Session.Token = "01J00000000000000000000000.the-secret-part-of-the-token"
	v := encode(rec, 1)
	if strings.Contains(string(v), "the-secret-part") {
		t.Fatal("the stored value holds the plaintext token")
	}
	got, err := decode(rec.User.ID, string(v))
	if err != nil {
		t.Fatal(err)
	}
	if got.Session.Token != "" || got.TokenHash != rec.TokenHash {
		t.Errorf("decoded Token %q, TokenHash %x; want none and %x", got.Session.Token, got.TokenHash, rec.TokenHash)
	}
}

// TestHeaderOffsets pins the offsets the update script relies on.
func TestHeaderOffsets(t *testing.T) {
	rec := sampleRecord("01J00000000000000000000000", time.Now())
	v := encode(rec, 0x0102030405060708)
	if v[0] != recordFormat {
		t.Errorf("format %d, want %d", v[0], recordFormat)
	}
	if got := binary.BigEndian.Uint64(v[offVersion:]); got != 0x0102030405060708 {
		t.Errorf("version at offset %d is %x", offVersion, got)
	}
}

// TestRecordSize keeps a fresh guest's value small: what can be derived
// (email, name, the session's user id) is not stored, and the session id
// and address are binary.
func TestRecordSize(t *testing.T) {
	rec := sampleRecord("01J00000000000000000000000", time.Now())
	rec.Session.ID = "01J00000000000000000000001"
	if n := len(encode(rec, 1)); n > 210 {
		t.Errorf("a fresh guest's value is %d bytes, want at most 210", n)
	}
}

// TestLargeRecord: a record past 64 KiB (a huge User-Agent) round-trips.
func TestLargeRecord(t *testing.T) {
	rec := sampleRecord("01J00000000000000000000000", time.Now().UTC().Truncate(time.Millisecond))
	rec.Session.UserAgent = strings.Repeat("u", 70000)
	rec.LinkedTo = "user-1"
	got, err := decode(rec.User.ID, string(encode(rec, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Error("a record over 64 KiB did not round-trip")
	}
}

// FuzzDecode checks that no stored value, however damaged, makes decode
// panic, and that whatever it accepts encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	v := encode(sampleRecord("01J00000000000000000000000", time.Unix(1700000000, 0)), 1)
	f.Add(string(v))
	f.Add("x")
	f.Add("")
	f.Add(string(v[:headerSize]))
	f.Fuzz(func(t *testing.T, v string) {
		rec, err := decode("id", v)
		if err != nil {
			return
		}
		back, err := decode("id", string(encode(rec, rec.Version)))
		if err != nil || !reflect.DeepEqual(back, rec) {
			t.Fatalf("re-encoded record does not decode the same: %v\n%+v\n%+v", err, back, rec)
		}
	})
}
