package redisstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// This file keeps the encoder of format 2, the guest records redisstore
// wrote itself before it became a store of bytes, as it was, so that the
// tests can write such records and show that they keep working: Get hands
// them to package anonymous unchanged, and an Update writes a frame.
//
// A format 2 record is one binary string:
//
//	0      format, 2
//	1..8   Version, big-endian: the Update script compares it in place
//	9..10  flags, big-endian
//	then   times in Unix milliseconds, as varints: Session.ExpiresAt,
//	       User.CreatedAt, then Session.UpdatedAt, User.UpdatedAt,
//	       Session.CreatedAt and ClaimUntil unless a flag says they equal
//	       User.CreatedAt (or, for ClaimUntil, that there is no claim)
//	then   TokenHash (32 bytes) unless a flag says it is zero
//	then   Email unless it is the default temp@{id}.com, Name unless it is
//	       "Anonymous", Session.ID (a 16-byte ULID when it is one),
//	       Session.UserID unless it is User.ID, IPAddress (4 or 16 bytes when
//	       it is an address), UserAgent, LinkedTo, ClaimOwner: each a uvarint
//	       length and its bytes, absent when a flag says so
//	then   Data, to the end

const (
	format2Format     = 2
	format2OffVersion = 1
	format2OffFlags   = 9
	format2HeaderSize = 11
)

const (
	f2EmailVerified = 1 << iota
	f2Anonymous
	f2Deleted
	f2SessionUpdated
	f2UserUpdated
	f2SessionCreated
	f2Claim
	f2TokenHash
	f2Email
	f2Name
	f2SessionULID
	f2SessionUserID
	f2IP
	f2LinkedTo
)

// f2ZeroTime stands for time.Time{}, which has no Unix millisecond form.
const f2ZeroTime = math.MinInt64

func f2Millis(t time.Time) int64 {
	if t.IsZero() {
		return f2ZeroTime
	}
	return t.UnixMilli()
}

func f2DefaultEmail(id string) string { return "temp@" + strings.ToLower(id) + ".com" }

func f2AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeFormat2 returns rec's format 2 form, as version v: the encoder
// redisstore used before frames, unchanged.
func encodeFormat2(rec *anonymous.Record, v uint64) []byte {
	u, s := &rec.User, &rec.Session
	var flags uint16
	set := func(f uint16, on bool) {
		if on {
			flags |= f
		}
	}
	set(f2EmailVerified, u.EmailVerified)
	set(f2Anonymous, u.IsAnonymous)
	set(f2Deleted, rec.Deleted)
	set(f2SessionUpdated, !s.UpdatedAt.Equal(u.CreatedAt))
	set(f2UserUpdated, !u.UpdatedAt.Equal(u.CreatedAt))
	set(f2SessionCreated, !s.CreatedAt.Equal(u.CreatedAt))
	set(f2Claim, rec.ClaimOwner != "" || !rec.ClaimUntil.IsZero())
	set(f2TokenHash, rec.TokenHash != [32]byte{})
	set(f2Email, u.Email != f2DefaultEmail(u.ID))
	set(f2Name, u.Name != "Anonymous")
	sid, sidErr := ulid.ParseStrict(s.ID)
	set(f2SessionULID, sidErr == nil && sid.String() == s.ID)
	set(f2SessionUserID, s.UserID != u.ID)
	ip, ipErr := netip.ParseAddr(s.IPAddress)
	set(f2IP, ipErr == nil && ip.Zone() == "" && ip.String() == s.IPAddress)
	set(f2LinkedTo, rec.LinkedTo != "")

	n := format2HeaderSize + 6*binary.MaxVarintLen64 + 32 + 16 + 16 + 8*binary.MaxVarintLen16 +
		len(u.Email) + len(u.Name) + len(s.ID) + len(s.UserID) + len(s.UserAgent) + len(rec.LinkedTo) + len(rec.ClaimOwner) + len(rec.Data)
	b := make([]byte, format2HeaderSize, n)
	b[0] = format2Format
	binary.BigEndian.PutUint64(b[format2OffVersion:], v)
	binary.BigEndian.PutUint16(b[format2OffFlags:], flags)
	b = binary.AppendVarint(b, f2Millis(s.ExpiresAt))
	b = binary.AppendVarint(b, f2Millis(u.CreatedAt))
	if flags&f2SessionUpdated != 0 {
		b = binary.AppendVarint(b, f2Millis(s.UpdatedAt))
	}
	if flags&f2UserUpdated != 0 {
		b = binary.AppendVarint(b, f2Millis(u.UpdatedAt))
	}
	if flags&f2SessionCreated != 0 {
		b = binary.AppendVarint(b, f2Millis(s.CreatedAt))
	}
	if flags&f2Claim != 0 {
		b = binary.AppendVarint(b, f2Millis(rec.ClaimUntil))
	}
	if flags&f2TokenHash != 0 {
		b = append(b, rec.TokenHash[:]...)
	}
	if flags&f2Email != 0 {
		b = f2AppendString(b, u.Email)
	}
	if flags&f2Name != 0 {
		b = f2AppendString(b, u.Name)
	}
	if flags&f2SessionULID != 0 {
		b = append(b, sid[:]...)
	} else {
		b = f2AppendString(b, s.ID)
	}
	if flags&f2SessionUserID != 0 {
		b = f2AppendString(b, s.UserID)
	}
	if flags&f2IP != 0 {
		b = f2AppendString(b, string(ip.AsSlice()))
	} else {
		b = f2AppendString(b, s.IPAddress)
	}
	b = f2AppendString(b, s.UserAgent)
	if flags&f2LinkedTo != 0 {
		b = f2AppendString(b, rec.LinkedTo)
	}
	if flags&f2Claim != 0 {
		b = f2AppendString(b, rec.ClaimOwner)
	}
	return append(b, rec.Data...)
}

// putFormat2 stores rec under prefix as the store did before frames: its
// format 2 form as version v, with SET PXAT at its expiry. It returns the
// bytes stored.
func putFormat2(t testing.TB, c redis.UniversalClient, prefix string, rec *anonymous.Record, v uint64) []byte {
	t.Helper()
	b := encodeFormat2(rec, v)
	exp := time.UnixMilli(max(rec.Session.ExpiresAt.UnixMilli(), 1))
	if err := c.SetArgs(context.Background(), prefix+"{"+rec.User.ID+"}", b, redis.SetArgs{ExpireAt: exp}).Err(); err != nil {
		t.Fatal(err)
	}
	return b
}

// format2Guest is a guest as the middleware made them, with a claim and
// data, so that every kind of field is in its format 2 form.
func format2Guest(t testing.TB) *anonymous.Record {
	id := newID(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	return &anonymous.Record{
		User: anonymous.User{
			ID: id, Email: f2DefaultEmail(id), Name: "Anonymous",
			CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour), IsAnonymous: true,
		},
		Session: anonymous.Session{
			ID: newID(t), UserID: id, ExpiresAt: now.Add(24*time.Hour + 123*time.Millisecond),
			CreatedAt: now.Add(-time.Hour), UpdatedAt: now,
			IPAddress: "203.0.113.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		},
		TokenHash:  sha256.Sum256([]byte(id + ".token")),
		Data:       []byte(`{"cart":{"tea":2}}`),
		ClaimOwner: "owner-1", ClaimUntil: now.Add(-time.Minute), // a lease that ran out
	}
}

// TestFormat2Entry: a format 2 record, as the store wrote it before
// frames, is read with its version and expiry and its exact bytes, which
// package anonymous decodes to the record written; an Update of that
// version writes a frame, one version up, and a second one conflicts.
func TestFormat2Entry(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	rec := format2Guest(t)
	rec.Version = 5
	stored := putFormat2(t, c, p, rec, rec.Version)

	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 5 || !got.Expires.Equal(rec.Session.ExpiresAt) || !bytes.Equal(got.Value, stored) {
		t.Fatalf("Get of a format 2 record: version %d, expires %v, value %q; want 5, %v and the stored bytes %q",
			got.Version, got.Expires, got.Value, rec.Session.ExpiresAt, stored)
	}

	// Package anonymous reads it back field for field.
	if dec, err := manager(t, s, anonymous.Options{}).Record(ctx, rec.User.ID); err != nil || !sameGuest(dec, rec) {
		t.Errorf("Manager.Record of a format 2 record:\n got %+v, %v\nwant %+v", dec, err, rec)
	}

	next := anonymous.Entry{Value: []byte("the record in package anonymous' format"), Version: got.Version, Expires: got.Expires.Add(time.Hour)}
	if err := s.Update(ctx, rec.User.ID, next); err != nil {
		t.Fatalf("Update of a format 2 record: %v", err)
	}
	raw, err := c.Get(ctx, p+"{"+rec.User.ID+"}").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if raw[0] != 3 || binary.BigEndian.Uint64(raw[1:]) != 6 || !bytes.Equal(raw[17:], next.Value) {
		t.Errorf("stored after the Update: %q, want a frame (format 3) of version 6 holding the new value", raw)
	}
	again, err := s.Get(ctx, rec.User.ID)
	if err != nil || again.Version != 6 || !again.Expires.Equal(next.Expires) || !bytes.Equal(again.Value, next.Value) {
		t.Errorf("Get after the Update: %+v, %v; want version 6 and the new value and expiry", again, err)
	}
	if err := s.Update(ctx, rec.User.ID, next); !errors.Is(err, anonymous.ErrConflict) {
		t.Errorf("a second Update of version 5: %v, want ErrConflict", err)
	}
}

// TestFormat2Guest: a guest that the store kept in format 2 comes back
// after the upgrade with its cookie, its id and its data, and keeps its
// cart when the application changes it (written as a frame from then on).
func TestFormat2Guest(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	m := manager(t, s, anonymous.Options{PersistOnIssue: true})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, data := anonymous.UserFrom(r.Context()), anonymous.DataFrom(r.Context())
		if r.Method == http.MethodPost {
			var err error
			if data, err = m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, '+'), nil }); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		if u != nil {
			w.Write([]byte(u.ID + " " + string(data)))
		}
	}))
	do := func(method string, ck *http.Cookie) (string, *http.Cookie) {
		r := httptest.NewRequest(method, "https://shop.example/", nil)
		r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
		if ck != nil {
			r.AddCookie(ck)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		for _, c := range w.Result().Cookies() {
			return w.Body.String(), c
		}
		return w.Body.String(), ck
	}

	// A guest issued and stored, then rewritten as the store kept it
	// before frames: the same fields, in format 2, with its data.
	body, cookie := do(http.MethodGet, nil)
	id, _, _ := strings.Cut(body, " ")
	rec, err := m.Record(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	rec.Data = []byte("cart")
	// Format 2 kept times to the millisecond.
	for _, tm := range []*time.Time{&rec.User.CreatedAt, &rec.User.UpdatedAt, &rec.Session.CreatedAt, &rec.Session.UpdatedAt, &rec.Session.ExpiresAt} {
		*tm = tm.Truncate(time.Millisecond)
	}
	putFormat2(t, c, p, rec, rec.Version)
	// The Manager reads it as the guest it was.
	got, err := m.Record(ctx, id)
	if err != nil {
		t.Fatalf("Manager.Record of a format 2 guest: %v", err)
	}
	if !sameGuest(got, rec) {
		t.Errorf("Manager.Record of a format 2 guest:\n got %+v\nwant %+v", got, rec)
	}

	if body, _ := do(http.MethodGet, cookie); body != id+" cart" {
		t.Fatalf("the format 2 guest's return: %q, want %q", body, id+" cart")
	}
	if body, _ := do(http.MethodPost, cookie); body != id+" cart+" {
		t.Fatalf("the format 2 guest's update: %q, want %q", body, id+" cart+")
	}
	raw, err := c.Get(ctx, p+"{"+id+"}").Bytes()
	if err != nil || raw[0] != 3 {
		t.Fatalf("after the update the guest is stored as %q (%v), want a frame", raw, err)
	}
	if body, _ := do(http.MethodGet, cookie); body != id+" cart+" {
		t.Errorf("the guest's return after the update: %q, want %q", body, id+" cart+")
	}
}

// sameGuest compares what a Manager keeps of a guest: every exported field,
// times with Equal.
func sameGuest(a, b *anonymous.Record) bool {
	ta := []time.Time{a.User.CreatedAt, a.User.UpdatedAt, a.Session.CreatedAt, a.Session.UpdatedAt, a.Session.ExpiresAt, a.ClaimUntil}
	tb := []time.Time{b.User.CreatedAt, b.User.UpdatedAt, b.Session.CreatedAt, b.Session.UpdatedAt, b.Session.ExpiresAt, b.ClaimUntil}
	for i := range ta {
		if !ta[i].Equal(tb[i]) {
			return false
		}
	}
	strip := func(r *anonymous.Record) anonymous.Record {
		return anonymous.Record{
			User: anonymous.User{ID: r.User.ID, Email: r.User.Email, Name: r.User.Name, EmailVerified: r.User.EmailVerified, IsAnonymous: r.User.IsAnonymous},
			Session: anonymous.Session{ID: r.Session.ID, UserID: r.Session.UserID, Token: r.Session.Token,
				IPAddress: r.Session.IPAddress, UserAgent: r.Session.UserAgent},
			TokenHash: r.TokenHash, Data: r.Data, LinkedTo: r.LinkedTo, Deleted: r.Deleted,
			ClaimOwner: r.ClaimOwner, Version: r.Version,
		}
	}
	return reflect.DeepEqual(strip(a), strip(b))
}
