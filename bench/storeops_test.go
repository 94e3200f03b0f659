package bench_test

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/redis/go-redis/v9"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/redisstore"
)

// countingStore passes every call to a real Store and counts it.
type countingStore struct {
	anonymous.Store
	calls atomic.Int64
}

func (s *countingStore) Create(ctx context.Context, key string, e anonymous.Entry) error {
	s.calls.Add(1)
	return s.Store.Create(ctx, key, e)
}

func (s *countingStore) Get(ctx context.Context, key string) (anonymous.Entry, error) {
	s.calls.Add(1)
	return s.Store.Get(ctx, key)
}

func (s *countingStore) Update(ctx context.Context, key string, e anonymous.Entry) error {
	s.calls.Add(1)
	return s.Store.Update(ctx, key, e)
}

// roundTrips counts what a go-redis client sends: each command sent alone
// and each pipeline is one round trip. It fails the test if a connection is
// dialled while counting, since a new connection's handshake is not the
// request's work.
type roundTrips struct {
	mu       sync.Mutex
	trips    int
	commands []string
	dials    int
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h.mu.Lock()
		h.dials++
		h.mu.Unlock()
		return next(ctx, network, addr)
	}
}

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.trips++
		h.commands = append(h.commands, commandName(cmd))
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.trips++
		for _, c := range cmds {
			h.commands = append(h.commands, commandName(c))
		}
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// commandName is cmd's name, "evalsha budget" for a call of the budget's
// limiter script (its key names a client's budget) rather than of
// redisstore's update script.
func commandName(cmd redis.Cmder) string {
	name := cmd.Name()
	if args := cmd.Args(); (name == "evalsha" || name == "eval") && len(args) > 3 {
		if key, _ := args[3].(string); strings.Contains(key, "budget:") {
			return name + " budget"
		}
	}
	return name
}

func (h *roundTrips) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trips, h.commands, h.dials = 0, nil, 0
}

// measure runs f and returns the round trips and commands it caused.
func (h *roundTrips) measure(t *testing.T, f func()) (int, []string) {
	t.Helper()
	h.reset()
	f()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dials != 0 {
		t.Fatalf("%d connections dialled while counting; the count would include handshakes", h.dials)
	}
	return h.trips, h.commands
}

// countedClient returns a one-connection client whose round trips h
// counts, with the connection already open, and a key prefix of the test's
// own.
func countedClient(t *testing.T) (*redis.Client, string, *roundTrips) {
	redistest.Client(t) // skips, or fails under ANON_REQUIRE_REDIS=1, without Redis
	o := redistest.Options(t)
	o.PoolSize, o.MinIdleConns = 1, 0
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	prefix := redistest.Prefix(t, c)
	if err := c.Ping(context.Background()).Err(); err != nil { // open the one connection now
		t.Fatal(err)
	}
	h := &roundTrips{}
	c.AddHook(h)
	return c, prefix, h
}

// countedRedis returns a redisstore on a one-connection client whose round
// trips h counts, with the connection already open.
func countedRedis(t *testing.T) (*redisstore.Store, *roundTrips) {
	c, prefix, h := countedClient(t)
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s, h
}

// guestHandler is package anonymous's middleware around readGuest, with the
// budget off as in the comparison.
func guestHandler(t *testing.T, store anonymous.Store, p bool) http.Handler {
	t.Helper()
	m, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: hashKey}}, PersistOnIssue: p, Lifetime: lifetime, ErrorLog: quiet,
		Budget: noBudget,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m.Middleware(readGuest)
}

// visit sends one request with the Cookie header ck and returns the guest
// id the handler saw and the cookie the response set ("" for none).
func visit(h http.Handler, ck string) (id, setCookie string) {
	w := &headerWriter{h: http.Header{}}
	h.ServeHTTP(w, request(ck, &id))
	return id, cookieHeader(w.h)
}

// TestNewVisitorOnReturnTouchesNoStore: under PersistOnReturn a cookie-less
// visitor gets a guest and a cookie with no store operation at all, on a
// real memstore and a real redisstore. The same wrapper then counts the
// Create of the visitor's return, which shows it counts.
func TestNewVisitorOnReturnTouchesNoStore(t *testing.T) {
	stores := map[string]func(t *testing.T) anonymous.Store{
		"memstore": func(t *testing.T) anonymous.Store {
			s, err := memstore.New(memstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"redisstore": func(t *testing.T) anonymous.Store {
			s, _ := countedRedis(t)
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			real := open(t)
			cs := &countingStore{Store: real}
			h := guestHandler(t, cs, onReturn)

			const visitors = 50
			for range visitors {
				id, ck := visit(h, "")
				if id == "" || ck == "" {
					t.Fatalf("new visitor: id %q, cookie %q; want both", id, ck)
				}
			}
			if n := cs.calls.Load(); n != 0 {
				t.Fatalf("%d store operations for %d new visitors, want 0", n, visitors)
			}

			id, ck := visit(h, "")
			got, _ := visit(h, ck)
			if got != id {
				t.Fatalf("returning visitor is %q, want %q", got, id)
			}
			if n := cs.calls.Load(); n == 0 {
				t.Fatal("the visitor's return made no store operation; the guest was never stored")
			}
			if _, err := real.Get(context.Background(), id); err != nil {
				t.Fatalf("guest %s not in the store after its return: %v", id, err)
			}
		})
	}
}

// TestRedisRoundTrips counts what package anonymous sends to a real Redis
// per request, with the budget off.
func TestRedisRoundTrips(t *testing.T) {
	t.Run("new visitor, PersistOnIssue: one round trip, guest stored", func(t *testing.T) {
		s, rt := countedRedis(t)
		h := guestHandler(t, s, onIssue)
		var id, ck string
		trips, cmds := rt.measure(t, func() { id, ck = visit(h, "") })
		if trips != 1 || id == "" || ck == "" {
			t.Fatalf("%d round trips %v, id %q, cookie %q; want 1 round trip, an id and a cookie", trips, cmds, id, ck)
		}
		if _, err := s.Get(context.Background(), id); err != nil {
			t.Fatalf("guest %s not stored: %v", id, err)
		}
		t.Logf("commands: %v", cmds)
	})

	t.Run("new visitor, PersistOnReturn: none; its return: two", func(t *testing.T) {
		s, rt := countedRedis(t)
		h := guestHandler(t, s, onReturn)
		var id, ck string
		trips, cmds := rt.measure(t, func() { id, ck = visit(h, "") })
		if trips != 0 || id == "" || ck == "" {
			t.Fatalf("%d round trips %v, id %q, cookie %q; want none, an id and a cookie", trips, cmds, id, ck)
		}
		var got string
		trips, cmds = rt.measure(t, func() { got, _ = visit(h, ck) })
		// A read, in case a sibling request of the page stored the guest
		// already, then the write.
		if trips != 2 || got != id {
			t.Fatalf("return: %d round trips %v, id %q; want 2 and %q", trips, cmds, got, id)
		}
		if _, err := s.Get(context.Background(), id); err != nil {
			t.Fatalf("guest %s not stored after its return: %v", id, err)
		}
	})

	t.Run("returning guest: one round trip", func(t *testing.T) {
		s, rt := countedRedis(t)
		h := guestHandler(t, s, onIssue)
		id, ck := visit(h, "")
		for range 3 {
			var got, set string
			trips, cmds := rt.measure(t, func() { got, set = visit(h, ck) })
			if trips != 1 || got != id || set != "" {
				t.Fatalf("%d round trips %v, id %q, Set-Cookie %q; want 1, %q, none", trips, cmds, got, set, id)
			}
			t.Logf("commands: %v", cmds)
		}
	})

	t.Run("forged cookie: no round trip", func(t *testing.T) {
		s, rt := countedRedis(t)
		h := guestHandler(t, s, onReturn)
		id, ck := visit(h, "")
		var got string
		trips, cmds := rt.measure(t, func() { got, _ = visit(h, tamper(ck)) })
		if trips != 0 || got == id {
			t.Fatalf("%d round trips %v, id %q; want none and a new guest", trips, cmds, got)
		}
	})
}

// TestGuestDataRoundTrips counts the Redis round trips of a returning guest
// with data (a cart of cartSize bytes) and of an update of it, against scs
// doing the same on its go-redis store. Each contender's script, if it has
// one, is loaded by the setup, as on any server after its first call.
func TestGuestDataRoundTrips(t *testing.T) {
	cases := []struct {
		name      string
		build     func(t *testing.T, c *redis.Client, prefix string) (fresh, read, update http.Handler)
		read, upd []string
	}{
		{
			"anonymous", func(t *testing.T, c *redis.Client, prefix string) (http.Handler, http.Handler, http.Handler) {
				s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
				if err != nil {
					t.Fatal(err)
				}
				return anonymousData(func(testing.TB) anonymous.Store { return s }, false)(t)
			},
			// The data comes with the guest; UpdateData is one script call
			// (compare and set) after the middleware's GET.
			[]string{"get"}, []string{"get", "evalsha"},
		},
		{
			"scs", func(t *testing.T, c *redis.Client, prefix string) (http.Handler, http.Handler, http.Handler) {
				return scsData(func(testing.TB) scs.Store { return goredisstore.NewWithPrefix(c, prefix) })(t)
			},
			// LoadAndSave's GET, then the commit's SET of the whole session.
			[]string{"get"}, []string{"get", "set"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, prefix, rt := countedClient(t)
			fresh, read, update := tc.build(t, c, prefix)
			ck, id := visitorWithCart(t, fresh, read)
			for i := range 3 {
				var got string
				var seen cart
				trips, cmds := rt.measure(t, func() {
					read.ServeHTTP(&headerWriter{h: http.Header{}}, withCartSink(request(ck, &got), &seen))
				})
				if got != id || len(seen.Lines) != cartLines || trips != len(tc.read) || !slices.Equal(cmds, tc.read) {
					t.Fatalf("returning visitor with a cart: id %q, %d lines, %d round trips %v; want %q, %d lines, %d round trips %v",
						got, len(seen.Lines), trips, cmds, id, cartLines, len(tc.read), tc.read)
				}
				w := &headerWriter{h: http.Header{}}
				trips, cmds = rt.measure(t, func() { update.ServeHTTP(w, request(ck, &got)) })
				if got != id || trips != len(tc.upd) || !slices.Equal(cmds, tc.upd) {
					t.Fatalf("update %d: id %q, %d round trips %v; want %q, %d round trips %v", i+1, got, trips, cmds, id, len(tc.upd), tc.upd)
				}
				if next := cookieHeader(w.h); next != "" {
					ck = next // scs re-sets its cookie on every write
				}
				if i == 0 {
					t.Logf("read: %v; update: %v", tc.read, tc.upd)
				}
			}
		})
	}
}

// TestGuestDataStoreOps counts the store operations of the same requests on
// memstore: one Get for a returning guest with data, and one Update more
// for an uncontended update of it.
func TestGuestDataStoreOps(t *testing.T) {
	cs := &countingStore{Store: newMemstore(t)}
	fresh, read, update := anonymousData(func(testing.TB) anonymous.Store { return cs }, false)(t)
	ck, id := visitorWithCart(t, fresh, read)
	for i := range 3 {
		var got string
		cs.calls.Store(0)
		read.ServeHTTP(&headerWriter{h: http.Header{}}, request(ck, &got))
		if n := cs.calls.Load(); got != id || n != 1 {
			t.Fatalf("returning visitor with a cart: id %q, %d store operations; want %q, 1", got, n, id)
		}
		cs.calls.Store(0)
		update.ServeHTTP(&headerWriter{h: http.Header{}}, request(ck, &got))
		if n := cs.calls.Load(); got != id || n != 2 {
			t.Fatalf("update %d: id %q, %d store operations; want %q, 2 (Get, Update)", i+1, got, n, id)
		}
	}
}
