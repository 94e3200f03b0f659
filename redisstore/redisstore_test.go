package redisstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
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

// entry is an entry holding value that expires in a day, at a whole
// millisecond.
func entry(value string) anonymous.Entry {
	return anonymous.Entry{Value: []byte(value), Expires: time.Now().Add(24 * time.Hour).Truncate(time.Millisecond)}
}

// frame is what the store keeps for value as version v, expiring at exp.
func frame(v uint64, exp time.Time, value []byte) []byte {
	b := []byte{3}
	b = binary.BigEndian.AppendUint64(b, v)
	b = binary.BigEndian.AppendUint64(b, uint64(exp.UnixMilli()))
	return append(b, value...)
}

// TestNew checks that New refuses a nil client and each invalid option with
// the error it has always given, and takes the zero Options.
func TestNew(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer c.Close()
	for _, tc := range []struct {
		name   string
		client redis.UniversalClient
		opts   redisstore.Options
		want   string // the error; "" for none
	}{
		{"nil client", nil, redisstore.Options{}, "redisstore: nil client"},
		{"brace in Prefix", c, redisstore.Options{Prefix: "a{b}:"}, `redisstore: Prefix "a{b}:" contains a brace, which would break the keys' hash tag`},
		{"closing brace in Prefix", c, redisstore.Options{Prefix: "x}"}, `redisstore: Prefix "x}" contains a brace, which would break the keys' hash tag`},
		{"Prefix a brace", c, redisstore.Options{Prefix: "{"}, `redisstore: Prefix "{" contains a brace, which would break the keys' hash tag`},
		{"negative WaitReplicas", c, redisstore.Options{WaitReplicas: -1}, "redisstore: negative WaitReplicas or WaitTimeout"},
		{"negative WaitTimeout", c, redisstore.Options{WaitReplicas: 1, WaitTimeout: -time.Millisecond}, "redisstore: negative WaitReplicas or WaitTimeout"},
		{"zero Options", c, redisstore.Options{}, ""},
		{"every option", c, redisstore.Options{Prefix: "shop:", WaitReplicas: 1, WaitTimeout: time.Second}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.New(tc.client, tc.opts)
			switch {
			case tc.want == "" && (err != nil || s == nil):
				t.Errorf("New = %p, %v; want a store", s, err)
			case tc.want != "" && (err == nil || err.Error() != tc.want || s != nil):
				t.Errorf("New = %p, %v; want nil and %q", s, err, tc.want)
			}
		})
	}
}

// TestKeyLayout checks the documented layout: one key per entry, holding
// its frame, with the absolute expiry it was given, which an Update moves
// both ways.
func TestKeyLayout(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	id := newID(t)
	e := entry("value")
	e.Expires = e.Expires.Add(123 * time.Millisecond)
	if err := s.Create(ctx, id, e); err != nil {
		t.Fatal(err)
	}
	key := p + "{" + id + "}"
	if got := redistest.Keys(t, c, p); !reflect.DeepEqual(got, []string{key}) {
		t.Fatalf("keys after Create: %q, want [%q]", got, key)
	}
	check := func(when string, v uint64, e anonymous.Entry) {
		t.Helper()
		if got := c.PExpireTime(ctx, key).Val(); got != time.Duration(e.Expires.UnixMilli())*time.Millisecond {
			t.Errorf("PEXPIRETIME %s: %v, want the entry's expiry %v", when, got, e.Expires.UnixMilli())
		}
		if got, want := c.Get(ctx, key).Val(), string(frame(v, e.Expires, e.Value)); got != want {
			t.Errorf("stored %s: %q, want the frame %q", when, got, want)
		}
	}
	check("after Create", 1, e)
	for i, d := range []time.Duration{time.Hour, -time.Minute} {
		e.Version, e.Expires, e.Value = uint64(i+1), e.Expires.Add(d), []byte("value "+strconv.Itoa(i+2))
		if err := s.Update(ctx, id, e); err != nil {
			t.Fatal(err)
		}
		check("after Update", uint64(i+2), e)
	}
}

// TestNoPlaintextToken: a guest's token, which its cookie carries, is
// nowhere in Redis.
func TestNoPlaintextToken(t *testing.T) {
	s, c, p := newStore(t)
	m := manager(t, s, anonymous.Options{PersistOnIssue: true})
	var id, token string
	m.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		id, token = anonymous.UserFrom(r.Context()).ID, anonymous.SessionFrom(r.Context()).Token
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	secret := token[strings.LastIndexByte(token, '.')+1:]
	if id == "" || len(secret) < 16 {
		t.Fatalf("guest %q with token %q", id, token)
	}
	keys := redistest.Keys(t, c, p)
	if len(keys) != 1 {
		t.Fatalf("keys: %q, want the guest's", keys)
	}
	if v := c.Get(t.Context(), keys[0]).Val(); strings.Contains(v, secret) {
		t.Error("the stored value holds the plaintext token")
	}
}

func TestCreateGetUpdate(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	id := newID(t)
	e := entry("first")
	e.Version = 7 // Create stores version 1 whatever it is given
	if err := s.Create(ctx, id, e); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || !got.Expires.Equal(e.Expires) || string(got.Value) != "first" || got.Durable {
		t.Errorf("Get: %+v, want version 1, %v, %q, not Durable", got, e.Expires, "first")
	}
	if err := s.Create(ctx, id, entry("second")); !errors.Is(err, anonymous.ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	got.Value = []byte("updated")
	if err := s.Update(ctx, id, got); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, id, got); !errors.Is(err, anonymous.ErrConflict) {
		t.Errorf("Update of a stale version: %v, want ErrConflict", err)
	}
	got.Version = 9
	if err := s.Update(ctx, id, got); !errors.Is(err, anonymous.ErrConflict) {
		t.Errorf("Update of a version never stored: %v, want ErrConflict", err)
	}
	again, err := s.Get(ctx, id)
	if err != nil || again.Version != 2 || string(again.Value) != "updated" {
		t.Errorf("after Update: version %d, value %q, %v; want 2, %q", again.Version, again.Value, err, "updated")
	}
	if err := s.Update(ctx, newID(t), entry("x")); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Update of an unknown key: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, newID(t)); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Get of an unknown key: %v, want ErrNotFound", err)
	}
}

// TestValueIsCopied: the store keeps its own copy of a written value, and
// Get's value is the caller's own: changing either changes nothing else.
func TestValueIsCopied(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	id := newID(t)
	e := entry("original")
	if err := s.Create(ctx, id, e); err != nil {
		t.Fatal(err)
	}
	copy(e.Value, "XXXXXXXX")
	got, err := s.Get(ctx, id)
	if err != nil || string(got.Value) != "original" {
		t.Fatalf("Get after the caller changed its value: %q, %v; want %q", got.Value, err, "original")
	}
	copy(got.Value, "YYYYYYYY")
	got.Value = append(got.Value, "Z"...)
	if again, err := s.Get(ctx, id); err != nil || string(again.Value) != "original" {
		t.Errorf("Get after the caller changed a Get's value: %q, %v; want %q", again.Value, err, "original")
	}
}

// TestGetOwnsValue holds go-redis to what Get relies on to skip a copy:
// each reply is read into a buffer of its own, which no later reply on the
// same connection reuses, on a client with one connection and from many
// goroutines.
func TestGetOwnsValue(t *testing.T) {
	opt := redistest.Options(t)
	opt.PoolSize = 1
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	p := redistest.Prefix(t, c)
	s, err := redisstore.New(c, redisstore.Options{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 8
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newID(t)
		if err := s.Create(ctx, ids[i], entry(strings.Repeat(strconv.Itoa(i), 300))); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			var held [n][]byte
			for round := range 50 {
				for i, id := range ids {
					e, err := s.Get(ctx, id)
					if err != nil {
						t.Error(err)
						return
					}
					if round == 0 {
						held[i] = e.Value
					}
				}
			}
			for i, v := range held {
				if want := strings.Repeat(strconv.Itoa(i), 300); string(v) != want {
					t.Errorf("goroutine %d: the value of Get %d changed under later Gets: %.20q…", g, i, v)
				}
			}
		})
	}
	wg.Wait()
}

// TestOneRoundTrip counts the commands a Get and an Update send.
func TestOneRoundTrip(t *testing.T) {
	s, c, _ := newStore(t)
	ctx := context.Background()
	id := newID(t)
	if err := s.Create(ctx, id, entry("v")); err != nil {
		t.Fatal(err)
	}
	e := entry("w")
	e.Version = 1
	if err := s.Update(ctx, id, e); err != nil { // loads the script
		t.Fatal(err)
	}
	var n atomic.Int64
	c.AddHook(countHook{&n})
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, id, got); err != nil {
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
		id, e := newID(t), entry("v")
		e.Expires = exp
		if err := s.Create(ctx, id, e); err != nil {
			t.Fatalf("Create expiring at %v: %v", exp, err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get of an entry created expired at %v: %v, want ErrNotFound", exp, err)
		}
	}
	id, e := newID(t), entry("v")
	if err := s.Create(ctx, id, e); err != nil {
		t.Fatal(err)
	}
	e.Version, e.Expires = 1, time.Now().Add(-time.Second)
	if err := s.Update(ctx, id, e); err != nil {
		t.Fatalf("Update to the past: %v", err)
	}
	if keys := redistest.Keys(t, c, p); len(keys) != 0 {
		t.Errorf("keys left after past expiries: %q", keys)
	}
}

func TestExpiry(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	id, e := newID(t), entry("v")
	e.Expires = time.Now().Add(300 * time.Millisecond)
	if err := s.Create(ctx, id, e); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); err != nil {
		t.Fatalf("Get before expiry: %v", err)
	}
	time.Sleep(time.Until(e.Expires) + 10*time.Millisecond) // let the expiry pass
	if _, err := s.Get(ctx, id); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Get after expiry: %v, want ErrNotFound", err)
	}
	e.Version = 1
	if err := s.Update(ctx, id, e); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("Update after expiry: %v, want ErrNotFound", err)
	}
	if err := s.Create(ctx, id, entry("again")); err != nil {
		t.Errorf("Create after expiry: %v", err)
	}
}

// TestBadKeys: keys that could not share one hash tag are never stored.
func TestBadKeys(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	for _, id := range []string{"", "}x", "a{b", "a}b"} {
		if err := s.Create(ctx, id, entry("v")); err == nil {
			t.Errorf("Create accepted key %q", id)
		}
		e := entry("v")
		e.Version = 1
		if err := s.Update(ctx, id, e); err == nil {
			t.Errorf("Update accepted key %q", id)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, anonymous.ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", id, err)
		}
	}
	if keys := redistest.Keys(t, c, p); len(keys) != 0 {
		t.Errorf("bad keys created keys: %q", keys)
	}
}

// TestMalformedValue: a stored value that is neither a frame nor a format 2
// record, or is cut short, is a store error: never a panic, never an entry,
// never ErrNotFound (which would let a Create replace it).
func TestMalformedValue(t *testing.T) {
	s, c, p := newStore(t)
	ctx := context.Background()
	for _, v := range []string{
		"g-not-a-record",
		"",
		"\x03",
		"\x03\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x01", // a frame cut short in its expiry
		"\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00",     // format 2 without its expiry
		"\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x80", // format 2 with its expiry cut short
		"\x04\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
	} {
		id := newID(t)
		c.Set(ctx, p+"{"+id+"}", v, time.Minute)
		if e, err := s.Get(ctx, id); !errors.Is(err, redisstore.ErrMalformed) {
			t.Errorf("Get of stored value %q: %+v, %v; want an error wrapping errMalformed", v, e, err)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	s, _, _ := newStore(t)
	id := newID(t)
	if err := s.Create(context.Background(), id, entry("v")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	changed := entry("changed")
	changed.Version = 1
	ops := map[string]func() error{
		"Create": func() error { return s.Create(ctx, newID(t), entry("v")) },
		"Get":    func() error { _, err := s.Get(ctx, id); return err },
		"Update": func() error { return s.Update(ctx, id, changed) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	if got, err := s.Get(context.Background(), id); err != nil || got.Version != 1 || string(got.Value) != "v" {
		t.Errorf("canceled operations changed the entry: %+v, %v", got, err)
	}
}

// TestLargeValue: a value past 64 KiB, of every byte value (CR, LF and NUL
// included), round trips through Create, Get and Update.
func TestLargeValue(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	big := make([]byte, 70000)
	for i := range big {
		big[i] = byte(i * 7)
	}
	id, e := newID(t), entry("")
	e.Value = big
	if err := s.Create(ctx, id, e); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, id)
	if err != nil || !bytes.Equal(got.Value, big) {
		t.Fatalf("large value: %d bytes back (%v), want the %d written", len(got.Value), err, len(big))
	}
	got.Value = append(big[1:], 0)
	if err := s.Update(ctx, id, got); err != nil {
		t.Fatal(err)
	}
	if again, err := s.Get(ctx, id); err != nil || !bytes.Equal(again.Value, got.Value) {
		t.Errorf("large value after Update: %d bytes back (%v), want the %d written", len(again.Value), err, len(got.Value))
	}
}

// With WaitReplicas, the writes marked Durable wait for replicas; on a
// server without any, they are reported as not replicated although the
// master has them, and other writes do not wait.
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
	id, e := newID(t), entry("new guest")
	if err := s.Create(ctx, id, e); err != nil { // no replica would answer a WAIT
		t.Fatalf("a Create not marked Durable: %v", err)
	}
	e.Version, e.Value = 1, []byte("cart")
	if err := s.Update(ctx, id, e); err != nil {
		t.Errorf("an Update not marked Durable: %v", err)
	}
	e.Version, e.Value, e.Durable = 2, []byte("claim"), true
	if err := s.Update(ctx, id, e); !errors.Is(err, redisstore.ErrNotReplicated) {
		t.Fatalf("a Durable Update with no replica to acknowledge it: %v, want ErrNotReplicated", err)
	}
	if got, err := s.Get(ctx, id); err != nil || string(got.Value) != "claim" || got.Version != 3 {
		t.Errorf("the master should hold the Durable Update: %+v, %v", got, err)
	}
	// A write that changes nothing reports why, not the replicas.
	if err := s.Update(ctx, id, e); !errors.Is(err, anonymous.ErrConflict) {
		t.Errorf("a stale Durable Update: %v, want ErrConflict", err)
	}
	if err := s.Update(ctx, newID(t), e); !errors.Is(err, anonymous.ErrNotFound) {
		t.Errorf("a Durable Update of an unknown key: %v, want ErrNotFound", err)
	}
	if err := s.Create(ctx, id, e); !errors.Is(err, anonymous.ErrExists) {
		t.Errorf("a Durable Create of a key taken: %v, want ErrExists", err)
	}
	tomb := newID(t)
	if err := s.Create(ctx, tomb, anonymous.Entry{Value: []byte("tombstone"), Expires: e.Expires, Durable: true}); !errors.Is(err, redisstore.ErrNotReplicated) {
		t.Fatalf("a Durable Create with no replica to acknowledge it: %v, want ErrNotReplicated", err)
	}
	if got, err := s.Get(ctx, tomb); err != nil || string(got.Value) != "tombstone" || got.Version != 1 {
		t.Errorf("the master should hold the Durable Create: %+v, %v", got, err)
	}
}

// TestGetAllocs: a Get allocates what go-redis's GET does, and one string
// more (the key): the value is go-redis's reply, not a copy of it.
func TestGetAllocs(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector allocates; run this test without it")
	}
	s, c, p := newStore(t)
	ctx := context.Background()
	id := newID(t)
	if err := s.Create(ctx, id, entry(strings.Repeat("v", 200))); err != nil {
		t.Fatal(err)
	}
	key := p + "{" + id + "}"
	raw := testing.AllocsPerRun(200, func() { c.Get(ctx, key).Bytes() })
	got := testing.AllocsPerRun(200, func() { s.Get(ctx, id) })
	t.Logf("GET: %v allocations; Store.Get: %v", raw, got)
	if got > raw+1 {
		t.Errorf("Store.Get allocates %v times, want at most GET's %v and one", got, raw)
	}
}

// TestReturningGuestAllocations: a returning guest's request allocates
// what go-redis's GET does and three more: the key, the request's state
// (which holds the decoded guest) and the token. go-redis's GET takes 7.
func TestReturningGuestAllocations(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector allocates; run this test without it")
	}
	s, c, p := newStore(t)
	m := manager(t, s, anonymous.Options{PersistOnIssue: true})
	var id string
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id = anonymous.UserFrom(r.Context()).ID
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "https://shop.example/", nil))
	r := httptest.NewRequest("GET", "https://shop.example/", nil)
	for _, ck := range w.Result().Cookies() {
		r.AddCookie(ck)
	}
	first := id
	hw := &headerOnly{h: http.Header{}}
	ctx := context.Background()
	key := p + "{" + first + "}"
	raw := testing.AllocsPerRun(200, func() { c.Get(ctx, key).Bytes() })
	got := testing.AllocsPerRun(200, func() {
		clear(hw.h)
		id = ""
		h.ServeHTTP(hw, r)
	})
	if id != first {
		t.Fatalf("returning guest %q, want %q", id, first)
	}
	t.Logf("GET: %v allocations; a returning guest's request: %v", raw, got)
	if got > raw+3 || got > 10 {
		t.Errorf("a returning guest's request allocates %v times, want at most GET's %v and three, and 10", got, raw)
	}
}

// headerOnly is a ResponseWriter that keeps headers and drops the body.
type headerOnly struct{ h http.Header }

func (w *headerOnly) Header() http.Header         { return w.h }
func (w *headerOnly) Write(p []byte) (int, error) { return len(p), nil }
func (w *headerOnly) WriteHeader(int)             {}

// guestServer serves a Manager on s that stores each new guest at once,
// with a desktop browser's User-Agent and data of dataLen bytes.
func guestServer(t testing.TB, s anonymous.Store, dataLen int) func() string {
	m := manager(t, s, anonymous.Options{PersistOnIssue: true})
	data := bytes.Repeat([]byte("c"), dataLen)
	var id string
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id = anonymous.UserFrom(r.Context()).ID
		if dataLen > 0 {
			if _, err := m.UpdateData(w, r, func([]byte) ([]byte, error) { return data, nil }); err != nil {
				t.Error(err)
			}
		}
	}))
	return func() string {
		r := httptest.NewRequest("GET", "https://shop.example/", nil)
		r.Header.Set("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36")
		r.RemoteAddr = "203.0.113.7:1234"
		h.ServeHTTP(httptest.NewRecorder(), r)
		return id
	}
}

// TestMemoryPerGuest measures what one guest costs Redis (MEMORY USAGE of
// its key) with a typical browser User-Agent and a prefix as long as the
// default one, without data and with a 200-byte cart, and keeps it from
// growing.
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
	for _, tc := range []struct {
		name  string
		data  int
		limit int64
	}{{"no data", 0, 350}, {"a 200-byte cart", 200, 560}} {
		id := guestServer(t, s, tc.data)()
		key := p + "{" + id + "}"
		t.Cleanup(func() { c.Del(context.Background(), key) })
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

// TestUsedMemoryPerGuest measures what guests cost a Redis of the test's
// own in used_memory, which counts the expiry entry MEMORY USAGE leaves
// out: 2,000 guests with a desktop browser's User-Agent, without data and
// with a 200-byte cart. The server's first key costs it some 70 KB besides
// the key, which are not a guest's: one is stored before measuring.
func TestUsedMemoryPerGuest(t *testing.T) {
	c := redistest.Private(t)
	s, err := redisstore.New(c, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(context.Background(), newID(t), entry("first")); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for _, tc := range []struct {
		name  string
		data  int
		limit int64
	}{{"no data", 0, 400}, {"a 200-byte cart", 200, 660}} {
		visit := guestServer(t, s, tc.data)
		before := usedMemory(t, c)
		for range n {
			visit()
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
