package redisstore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/redisstore"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// newStore returns a store on the single node at REDIS_URL under a fresh
// prefix, with the client and prefix for looking at the keys directly.
func newStore(t testing.TB) (*redisstore.Store, *redis.Client, string) {
	t.Helper()
	c := redistest.Client(t)
	p := redistest.Prefix(t, c)
	s, err := redisstore.New(c, redisstore.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, p
}

func newID(t testing.TB) string {
	t.Helper()
	return ulid.MustNew(ulid.Now(), rand.Reader).String()
}

// guest returns a record as the middleware makes it, expiring in a day.
func guest(t testing.TB) *anonymous.Record {
	id := newID(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	return &anonymous.Record{
		User: anonymous.User{
			ID: id, Email: "temp@" + strings.ToLower(id) + ".com", Name: "Anonymous",
			CreatedAt: now, UpdatedAt: now, IsAnonymous: true,
		},
		Session: anonymous.Session{
			ID: newID(t), UserID: id, ExpiresAt: now.Add(24 * time.Hour), CreatedAt: now, UpdatedAt: now,
			IPAddress: "192.0.2.1", UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		},
		TokenHash: sha256.Sum256([]byte(id + ".token")),
	}
}

func TestNew(t *testing.T) {
	if _, err := redisstore.New(nil, redisstore.Options{}); err == nil {
		t.Error("New accepted a nil client")
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer c.Close()
	for _, p := range []string{"a{b}:", "x}", "{"} {
		if _, err := redisstore.New(c, redisstore.Options{Prefix: p}); err == nil {
			t.Errorf("New accepted Prefix %q, which breaks the hash tag", p)
		}
	}
	if _, err := redisstore.New(c, redisstore.Options{}); err != nil {
		t.Errorf("New with zero Options: %v", err)
	}
}

// TestKeyLayout checks the documented layout: one key per guest, its lease
// beside it under the same hash tag, each with the absolute expiry it was
// given, and no plaintext token anywhere.
func TestKeyLayout(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	rec.Session.Token = rec.User.ID + ".plaintext-secret"
	rec.Session.ExpiresAt = rec.Session.ExpiresAt.Add(123 * time.Millisecond)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	key := p + "{" + rec.User.ID + "}"
	if got := redistest.Keys(t, c, p); !reflect.DeepEqual(got, []string{key}) {
		t.Fatalf("keys after Create: %q, want [%q]", got, key)
	}
	if got := c.PExpireTime(ctx, key).Val(); got != time.Duration(rec.Session.ExpiresAt.UnixMilli())*time.Millisecond {
		t.Errorf("PEXPIRETIME %v, want the record's expiry %v", got, rec.Session.ExpiresAt.UnixMilli())
	}
	v := c.Get(ctx, key).Val()
	if strings.Contains(v, "plaintext-secret") {
		t.Error("the stored value holds the plaintext token")
	}

	until := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	if err := s.Claim(ctx, rec.User.ID, "owner-1", until); err != nil {
		t.Fatal(err)
	}
	claim := key + ":claim"
	if got := c.Get(ctx, claim).Val(); got != "owner-1" {
		t.Errorf("lease holds %q, want owner-1", got)
	}
	if got := c.PExpireTime(ctx, claim).Val(); got != time.Duration(until.UnixMilli())*time.Millisecond {
		t.Errorf("lease PEXPIRETIME %v, want %v", got, until.UnixMilli())
	}
	if a, b := c.ClusterKeySlot(ctx, key).Val(), c.ClusterKeySlot(ctx, claim).Val(); a != b {
		t.Errorf("record and lease in slots %d and %d", a, b)
	}
}

func TestCreateGet(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	rec.Session.Token = "not stored"
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *rec
	want.Session.Token = ""
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("Get:\n got %+v\nwant %+v", got, &want)
	}
	got.User.Name = "changed"
	if again, _ := s.Get(ctx, rec.User.ID); again.User.Name != "Anonymous" {
		t.Error("changing a Get result changed the store")
	}
	if err := s.Create(ctx, guestWithID(t, rec.User.ID)); !errors.Is(err, anonymous.ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	if _, err := s.Get(ctx, newID(t)); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Get of an unknown id: %v, want ErrNotFound", err)
	}
}

func guestWithID(t testing.TB, id string) *anonymous.Record {
	r := guest(t)
	r.User.ID, r.Session.UserID = id, id
	return r
}

// TestGetOneRoundTrip counts the commands a Get sends.
func TestGetOneRoundTrip(t *testing.T) {
	s, c, _ := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	c.AddHook(countHook{&n})
	if _, err := s.Get(ctx, rec.User.ID); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("Get sent %d commands, want 1", got)
	}
}

type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestPastExpiryCreatesNoKey: an expiry already gone must not leave a key,
// least of all one without an expiry.
func TestPastExpiryCreatesNoKey(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	for _, exp := range []time.Time{time.Now().Add(-time.Second), time.Unix(0, 0), {}} {
		rec := guest(t)
		rec.Session.ExpiresAt = exp
		if err := s.Create(ctx, rec); err != nil {
			t.Fatalf("Create expiring at %v: %v", exp, err)
		}
		if _, err := s.Get(ctx, rec.User.ID); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get of a guest created expired at %v: %v, want ErrNotFound", exp, err)
		}
	}

	rec := guest(t)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(ctx, rec.User.ID, "o", time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("Claim until the past: %v", err)
	}
	if err := s.Touch(ctx, rec.User.ID, time.Now().Add(-time.Second), time.Now()); err != nil {
		t.Fatalf("Touch to the past: %v", err)
	}
	if keys := redistest.Keys(t, c, p); len(keys) != 0 {
		t.Errorf("keys left after past expiries: %q", keys)
	}
}

func TestExpiry(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	rec.Session.ExpiresAt = time.Now().Add(300 * time.Millisecond)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, rec.User.ID); err != nil {
		t.Fatalf("Get before expiry: %v", err)
	}
	time.Sleep(time.Until(rec.Session.ExpiresAt) + 10*time.Millisecond) // let the expiry pass
	if _, err := s.Get(ctx, rec.User.ID); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Get after expiry: %v, want ErrNotFound", err)
	}
	if err := s.Create(ctx, guestWithID(t, rec.User.ID)); err != nil {
		t.Errorf("Create after expiry: %v", err)
	}
}

func TestTouch(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(48 * time.Hour).Add(456 * time.Microsecond).UTC()
	now := time.Now().UTC()
	if err := s.Touch(ctx, rec.User.ID, exp, now); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Session.ExpiresAt.Equal(exp) || !got.Session.UpdatedAt.Equal(now) {
		t.Errorf("after Touch: ExpiresAt %v UpdatedAt %v, want %v %v", got.Session.ExpiresAt, got.Session.UpdatedAt, exp, now)
	}
	want := *rec
	want.Session.ExpiresAt, want.Session.UpdatedAt = got.Session.ExpiresAt, got.Session.UpdatedAt
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("Touch changed more than the expiry:\n got %+v\nwant %+v", got, &want)
	}
	key := p + "{" + rec.User.ID + "}"
	if got := c.PExpireTime(ctx, key).Val(); got != time.Duration(exp.UnixMilli())*time.Millisecond {
		t.Errorf("PEXPIRETIME after Touch %v, want %v", got, exp.UnixMilli())
	}
	if err := s.Touch(ctx, newID(t), exp, now); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Touch of an unknown guest: %v, want ErrNotFound", err)
	}
	if keys := redistest.Keys(t, c, p); len(keys) != 1 {
		t.Errorf("Touch of an unknown guest left keys: %q", keys)
	}
}

func TestClaimRelease(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	id := rec.User.ID
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Minute)
	if err := s.Claim(ctx, id, "a", until); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(ctx, id, "b", until); !errors.Is(err, anonymous.ErrClaimed) {
		t.Errorf("Claim by b while a holds it: %v, want ErrClaimed", err)
	}
	if err := s.Release(ctx, id, "b"); err != nil {
		t.Errorf("Release by a non-holder: %v", err)
	}
	if err := s.Claim(ctx, id, "b", until); !errors.Is(err, anonymous.ErrClaimed) {
		t.Errorf("Release by a non-holder dropped the lease: %v", err)
	}
	if err := s.Release(ctx, id, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(ctx, id, "b", time.Now().Add(200*time.Millisecond)); err != nil {
		t.Errorf("Claim after Release: %v", err)
	}
	time.Sleep(250 * time.Millisecond) // let b's lease run out
	if err := s.Claim(ctx, id, "c", until); err != nil {
		t.Errorf("Claim after the lease ran out: %v", err)
	}
	if err := s.Claim(ctx, newID(t), "a", until); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Claim of an unknown guest: %v, want ErrNotFound", err)
	}
}

func TestConcurrentClaimAndCreate(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	const n = 16
	var created, claimed atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := guestWithID(t, rec.User.ID)
			switch err := s.Create(ctx, r); {
			case err == nil:
				created.Add(1)
			case !errors.Is(err, anonymous.ErrExists):
				t.Errorf("Create: %v", err)
			}
			switch err := s.Claim(ctx, rec.User.ID, string(rune('a'+i)), time.Now().Add(time.Minute)); {
			case err == nil:
				claimed.Add(1)
			case !errors.Is(err, anonymous.ErrClaimed):
				t.Errorf("Claim: %v", err)
			}
		})
	}
	wg.Wait()
	if created.Load() != 1 || claimed.Load() != 1 {
		t.Errorf("%d Creates and %d Claims succeeded, want exactly one of each", created.Load(), claimed.Load())
	}
}

// TestDeleteKeepsIDReserved: after Delete only a one-byte tombstone is
// left, with the guest's expiry, and the lease is gone.
func TestDeleteKeepsIDReserved(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	id := rec.User.ID
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(ctx, id, "a", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Create(ctx, guestWithID(t, id)); !errors.Is(err, anonymous.ErrExists) {
		t.Errorf("Create after Delete: %v, want ErrExists", err)
	}
	for name, err := range map[string]error{
		"Touch":  s.Touch(ctx, id, time.Now().Add(time.Hour), time.Now()),
		"Claim":  s.Claim(ctx, id, "b", time.Now().Add(time.Minute)),
		"Revoke": s.Revoke(ctx, id, "user-1"),
	} {
		if !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("%s after Delete: %v, want ErrNotFound", name, err)
		}
	}
	key := p + "{" + id + "}"
	if keys := redistest.Keys(t, c, p); !reflect.DeepEqual(keys, []string{key}) {
		t.Errorf("keys after Delete: %q, want only the tombstone %q", keys, key)
	}
	if got := c.StrLen(ctx, key).Val(); got != 1 {
		t.Errorf("tombstone is %d bytes, want 1", got)
	}
	if got := c.PExpireTime(ctx, key).Val(); got != time.Duration(rec.Session.ExpiresAt.UnixMilli())*time.Millisecond {
		t.Errorf("tombstone PEXPIRETIME %v, want the guest's expiry", got)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := s.Delete(ctx, newID(t)); err != nil {
		t.Errorf("Delete of an unknown guest: %v", err)
	}
	if keys := redistest.Keys(t, c, p); len(keys) != 1 {
		t.Errorf("Delete of an unknown guest created keys: %q", keys)
	}
}

func TestRevoke(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	id := rec.User.ID
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(ctx, id, "a", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, id, "real-user-7"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get of a revoked guest: %v", err)
	}
	want := *rec
	want.TokenHash = [32]byte{}
	want.LinkedTo = "real-user-7"
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("revoked guest:\n got %+v\nwant %+v", got, &want)
	}
	if err := s.Touch(ctx, id, time.Now().Add(time.Hour), time.Now()); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Touch of a revoked guest: %v, want ErrNotFound", err)
	}
	if err := s.Claim(ctx, id, "b", time.Now().Add(time.Minute)); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Claim of a revoked guest: %v, want ErrNotFound", err)
	}
	key := p + "{" + id + "}"
	if keys := redistest.Keys(t, c, p); !reflect.DeepEqual(keys, []string{key}) {
		t.Errorf("keys after Revoke: %q, want only the record (lease dropped)", keys)
	}
	if got := c.PExpireTime(ctx, key).Val(); got != time.Duration(rec.Session.ExpiresAt.UnixMilli())*time.Millisecond {
		t.Errorf("PEXPIRETIME after Revoke %v, want the guest's expiry", got)
	}
	if err := s.Revoke(ctx, newID(t), "u"); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Revoke of an unknown guest: %v, want ErrNotFound", err)
	}
}

// TestBadIDs: ids that could not share one hash tag are never stored.
func TestBadIDs(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	for _, id := range []string{"", "}x", "a{b", "a}b"} {
		r := guestWithID(t, id)
		if err := s.Create(ctx, r); err == nil {
			t.Errorf("Create accepted id %q", id)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", id, err)
		}
	}
	if keys := redistest.Keys(t, c, p); len(keys) != 0 {
		t.Errorf("bad ids created keys: %q", keys)
	}
}

// TestMalformedValue: a damaged value is a store error, never a panic or a
// made-up guest.
func TestMalformedValue(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	id := newID(t)
	c.Set(ctx, p+"{"+id+"}", "g-not-a-record", time.Minute)
	if _, err := s.Get(ctx, id); err == nil || errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Get of a damaged value: %v, want a store error", err)
	}
}

func TestCanceledContext(t *testing.T) {
	s, _, _ := newStore(t)
	rec := guest(t)
	if err := s.Create(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	id := rec.User.ID
	ops := map[string]func() error{
		"Create":  func() error { return s.Create(ctx, guest(t)) },
		"Get":     func() error { _, err := s.Get(ctx, id); return err },
		"Touch":   func() error { return s.Touch(ctx, id, time.Now().Add(time.Hour), time.Now()) },
		"Claim":   func() error { return s.Claim(ctx, id, "a", time.Now().Add(time.Minute)) },
		"Release": func() error { return s.Release(ctx, id, "a") },
		"Delete":  func() error { return s.Delete(ctx, id) },
		"Revoke":  func() error { return s.Revoke(ctx, id, "u") },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	if _, err := s.Get(context.Background(), id); err != nil {
		t.Errorf("canceled operations changed the guest: %v", err)
	}
}

// TestMemoryPerGuest measures what one guest costs Redis (MEMORY USAGE of
// its key) with a typical browser User-Agent and a prefix as long as the
// default one, and keeps it from growing.
func TestMemoryPerGuest(t *testing.T) {
	c := redistest.Client(t)
	ctx := context.Background()
	var b [2]byte
	rand.Read(b[:])
	p := fmt.Sprintf("m%03x:", int(b[0])<<4|int(b[1])>>4) // random, and as long as "anon:"
	s, err := redisstore.New(c, redisstore.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	rec := guest(t)
	rec.Session.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	rec.Session.IPAddress = "203.0.113.7"
	key := p + "{" + rec.User.ID + "}"
	t.Cleanup(func() { c.Del(context.Background(), key) })
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	used, err := c.MemoryUsage(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one guest: MEMORY USAGE %d bytes (value %d bytes, key %d bytes)", used, c.StrLen(ctx, key).Val(), len(key))
	if used > 512 {
		t.Errorf("one guest uses %d bytes of Redis memory, want at most 512", used)
	}
}

// TestRevokeLargeRecord: the Revoke script finds LinkedTo past 64 KiB.
func TestRevokeLargeRecord(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	rec.Session.UserAgent = strings.Repeat("u", 70000)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, rec.User.ID, "real-user-8"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *rec
	want.TokenHash, want.LinkedTo = [32]byte{}, "real-user-8"
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("revoked large record differs: LinkedTo %q, UserAgent %d bytes", got.LinkedTo, len(got.Session.UserAgent))
	}
}
