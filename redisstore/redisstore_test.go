package redisstore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
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

// TestKeyLayout checks the documented layout: one key per guest, with the
// absolute expiry it was given, and no plaintext token anywhere.
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
	if v := c.Get(ctx, key).Val(); strings.Contains(v, "plaintext-secret") {
		t.Error("the stored value holds the plaintext token")
	}
	// An update moves the key's expiry with the record's, both ways.
	for _, d := range []time.Duration{time.Hour, -time.Minute} {
		got, err := s.Get(ctx, rec.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		got.Session.ExpiresAt = got.Session.ExpiresAt.Add(d)
		if err := s.Update(ctx, got); err != nil {
			t.Fatal(err)
		}
		if pt := c.PExpireTime(ctx, key).Val(); pt != time.Duration(got.Session.ExpiresAt.UnixMilli())*time.Millisecond {
			t.Errorf("PEXPIRETIME after Update %v, want %v", pt, got.Session.ExpiresAt.UnixMilli())
		}
	}
}

func TestCreateGetUpdate(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	rec.Version = 7 // Create stores version 1 whatever it is given
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *rec
	want.Version = 1
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("Get:\n got %+v\nwant %+v", got, &want)
	}
	got.Data = []byte(`{"cart":{"tea":2}}`)
	if err := s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, got); !errors.Is(err, anonymous.ErrConflict) {
		t.Errorf("Update of a stale version: %v, want ErrConflict", err)
	}
	again, err := s.Get(ctx, rec.User.ID)
	if err != nil || again.Version != 2 || string(again.Data) != `{"cart":{"tea":2}}` {
		t.Errorf("after Update: version %d, data %q, %v", again.Version, again.Data, err)
	}
	if err := s.Create(ctx, guestWithID(t, rec.User.ID)); !errors.Is(err, anonymous.ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	missing := guest(t)
	if err := s.Update(ctx, missing); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Update of an unknown id: %v, want ErrNotFound", err)
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

// TestOneRoundTrip counts the commands a Get and an Update send.
func TestOneRoundTrip(t *testing.T) {
	s, c, _ := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	rec.Version = 1
	if err := s.Update(ctx, rec); err != nil { // loads the script
		t.Fatal(err)
	}
	var n atomic.Int64
	c.AddHook(countHook{&n})
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 2 {
		t.Errorf("Get and Update sent %d commands, want 2", got)
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
	rec.Version = 1
	rec.Session.ExpiresAt = time.Now().Add(-time.Second)
	if err := s.Update(ctx, rec); err != nil {
		t.Fatalf("Update to the past: %v", err)
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
	changed := *rec
	changed.Version, changed.Data = 1, []byte("x")
	ops := map[string]func() error{
		"Create": func() error { return s.Create(ctx, guest(t)) },
		"Get":    func() error { _, err := s.Get(ctx, id); return err },
		"Update": func() error { return s.Update(ctx, &changed) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	if got, err := s.Get(context.Background(), id); err != nil || got.Version != 1 || got.Data != nil {
		t.Errorf("canceled operations changed the guest: %+v, %v", got, err)
	}
}

// TestMemoryPerGuest measures what one guest costs Redis (MEMORY USAGE of
// its key, and used_memory, which counts its expiry too) with a typical
// browser User-Agent and a prefix as long as the default one, without data
// and with a 200-byte cart, and keeps it from growing.
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
	cart := []byte(`{"lines":[{"sku":"tea-sencha","qty":2},{"sku":"tea-oolong","qty":1},{"sku":"mug-blue","qty":1},{"sku":"kettle-steel","qty":1},{"sku":"strainer","qty":3}],"coupon":"WELCOME","v":1}`)
	cart = append(cart, strings.Repeat(" ", 200-len(cart))...)
	for _, tc := range []struct {
		name  string
		data  []byte
		limit int64
	}{{"no data", nil, 350}, {"a 200-byte cart", cart, 560}} {
		rec := guest(t)
		rec.Session.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
		rec.Session.IPAddress = "203.0.113.7"
		rec.Data = tc.data
		key := p + "{" + rec.User.ID + "}"
		t.Cleanup(func() { c.Del(context.Background(), key) })
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		used, err := c.MemoryUsage(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("one guest, %s: MEMORY USAGE %d bytes (value %d bytes, key %d bytes)", tc.name, used, c.StrLen(ctx, key).Val(), len(key))
		if used > tc.limit {
			t.Errorf("one guest with %s uses %d bytes of Redis memory, want at most %d", tc.name, used, tc.limit)
		}
	}
}

// TestLargeRecord: a record past 64 KiB round trips.
func TestLargeRecord(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rec := guest(t)
	rec.Session.UserAgent = strings.Repeat("u", 70000)
	rec.Data = []byte(strings.Repeat("d", 70000))
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *rec
	want.Version = 1
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("large record differs: UserAgent %d bytes, data %d bytes", len(got.Session.UserAgent), len(got.Data))
	}
}

// TestUsedMemoryPerGuest measures what guests cost a Redis of the test's
// own in used_memory, which counts the expiry entry MEMORY USAGE leaves
// out: 2,000 guests with a desktop browser's User-Agent, without data and
// with a 200-byte cart. The server's first key costs it some 70 KB besides
// the key, which are not a guest's: one is stored before measuring.
func TestUsedMemoryPerGuest(t *testing.T) {
	c := redistest.Private(t)
	ctx := context.Background()
	s, err := redisstore.New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, guest(t)); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for _, tc := range []struct {
		name  string
		data  int
		limit int64
	}{{"no data", 0, 350}, {"a 200-byte cart", 200, 600}} {
		before := usedMemory(t, c)
		for range n {
			rec := guest(t)
			rec.Session.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
			rec.Session.IPAddress = "203.0.113.7"
			rec.Session.ExpiresAt = time.Now().Add(30 * 24 * time.Hour)
			if tc.data > 0 {
				rec.Data = []byte(strings.Repeat("c", tc.data))
			}
			if err := s.Create(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		per := (usedMemory(t, c) - before) / n
		t.Logf("%s: %d bytes of used_memory per guest", tc.name, per)
		if per > tc.limit {
			t.Errorf("%s: %d bytes of used_memory per guest, want at most %d", tc.name, per, tc.limit)
		}
	}
}

func usedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// With WaitReplicas, the writes that guard links and deletion wait for
// replicas; on a server without any, they are reported as not replicated
// although the master has them, and other writes do not wait.
func TestWaitReplicas(t *testing.T) {
	c := redistest.Client(t)
	if n := c.Info(context.Background(), "replication").Val(); strings.Contains(n, "connected_slaves:") && !strings.Contains(n, "connected_slaves:0") {
		t.Fatalf("this test needs a Redis without replicas: %s", n)
	}
	s, err := redisstore.New(c, redisstore.Options{Prefix: redistest.Prefix(t, c), WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec := guest(t)
	if err := s.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	rec.Version, rec.Data = 1, []byte("cart")
	if err := s.Update(ctx, rec); err != nil { // no replica would answer a WAIT
		t.Errorf("a data update: %v", err)
	}
	rec.Version, rec.ClaimOwner, rec.ClaimUntil = 2, "owner-1", time.Now().Add(time.Minute)
	if err := s.Update(ctx, rec); !errors.Is(err, redisstore.ErrNotReplicated) {
		t.Fatalf("a claim with no replica to acknowledge it: %v, want ErrNotReplicated", err)
	}
	got, err := s.Get(ctx, rec.User.ID)
	if err != nil || got.ClaimOwner != "owner-1" || got.Version != 3 {
		t.Errorf("the master should hold the claim: %+v, %v", got, err)
	}
	// A conflict is answered at once, with nothing to wait for.
	if err := s.Update(ctx, rec); !errors.Is(err, anonymous.ErrConflict) {
		t.Errorf("a stale claim: %v, want ErrConflict", err)
	}
	if _, err := redisstore.New(c, redisstore.Options{WaitReplicas: -1}); err == nil {
		t.Error("New accepted a negative WaitReplicas")
	}
}
