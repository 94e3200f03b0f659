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
	now := time.Date(2025, 3, 4, 5, 6, 7, 891_234_567, time.UTC)
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
			r.Session.CreatedAt = now.Add(time.Second)
			r.Session.UserID = "someone-else"
			r.LinkedTo = "user-42"
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
			v, err := encode(&want)
			if err != nil {
				t.Fatal(err)
			}
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
	v, err := encode(rec)
	if err != nil {
		t.Fatal(err)
	}
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

// TestHeaderOffsets pins the offsets the Lua scripts rely on.
func TestHeaderOffsets(t *testing.T) {
	rec := sampleRecord("01J00000000000000000000000", time.Now())
	rec.LinkedTo = "user-1"
	v, err := encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	if v[0] != stateRevoked {
		t.Errorf("state %q for a record with LinkedTo, want %q", v[0], stateRevoked)
	}
	if got := string(v[offHash : offHash+32]); got != string(rec.TokenHash[:]) {
		t.Errorf("token hash not at offset %d", offHash)
	}
	tail := int(binary.BigEndian.Uint32(v[offTail:]))
	if got := string(v[tail:]); got != "user-1" {
		t.Errorf("LinkedTo at the tail offset is %q", got)
	}
	if got := int64(be64(string(v[offExpires:]))); got != rec.Session.ExpiresAt.UnixNano() {
		t.Errorf("expiry at offset %d is %d", offExpires, got)
	}
}

// TestLargeRecord: a record past 64 KiB (a huge User-Agent) round-trips.
func TestLargeRecord(t *testing.T) {
	rec := sampleRecord("01J00000000000000000000000", time.Now().UTC())
	rec.Session.UserAgent = strings.Repeat("u", 70000)
	rec.LinkedTo = "user-1"
	v, err := encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(rec.User.ID, string(v))
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
	v, _ := encode(sampleRecord("01J00000000000000000000000", time.Unix(1700000000, 0)))
	f.Add(string(v))
	f.Add("x")
	f.Add("")
	f.Add(string(v[:headerSize]))
	f.Fuzz(func(t *testing.T, v string) {
		rec, err := decode("id", v)
		if err != nil {
			return
		}
		again, err := encode(rec)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", rec, err)
		}
		back, err := decode("id", string(again))
		if err != nil || !reflect.DeepEqual(back, rec) {
			t.Fatalf("re-encoded record does not decode the same: %v\n%+v\n%+v", err, back, rec)
		}
	})
}
