package bench_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/redisstore"
)

// The budget (Options.Budget) is consulted only when a new guest is stored:
// under PersistOnIssue on a new visitor's first request, under
// PersistOnReturn on its first return (or its first UpdateData). Every
// benchmark request comes from one address, so the benchmarks give the
// budget a rate far above what they store, and either keep that one client
// or give every new visitor an address of its own, as new visitors mostly
// have.
var (
	// bigBudget: a client may store a million guests a second, after a
	// burst of a million. What a limiter call costs does not depend on
	// the numbers, but how long Redis keeps a client's key does: until
	// its budget is full again, under a second here, 36 seconds under the
	// defaults. With the defaults, the expiry of a benchmark's many keys
	// would burden the benchmarks after it instead of the one that made
	// them.
	bigBudget = anonymous.Budget{Levels: func() []anonymous.Level {
		ls := anonymous.DefaultLevels()
		for i := range ls {
			ls[i].Rate, ls[i].Period, ls[i].Burst = 1_000_000, time.Second, 1_000_000
		}
		return ls
	}()}
)

// budgetHandler is package anonymous's middleware around readGuest with
// budget b, and its Manager.
func budgetHandler(tb testing.TB, store anonymous.Store, p bool, b anonymous.Budget) (*anonymous.Manager, http.Handler) {
	tb.Helper()
	m, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: hashKey}}, PersistOnIssue: p, Lifetime: lifetime, ErrorLog: quiet, Budget: b,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return m, m.Middleware(readGuest)
}

// BenchmarkNewGuestBudget: a new visitor under PersistOnIssue, its guest
// stored at once, with the budget off, on for one client (memstore: the
// in-memory limiter; Redis: redisstore's, one script call), and on with a
// new client per visitor, whose budget the limiter must create. After the
// run, every guest must be in the store: a refused one would have been
// measured on a cheaper path.
func BenchmarkNewGuestBudget(b *testing.B) {
	// Each store comes with a count of the guests it holds.
	stores := []struct {
		name string
		open func(testing.TB) (anonymous.Store, func() int)
	}{
		{"memstore", func(tb testing.TB) (anonymous.Store, func() int) {
			s := newMemstore(tb)
			return s, s.Len
		}},
		{"redisstore", func(tb testing.TB) (anonymous.Store, func() int) {
			c := redistest.Client(tb)
			prefix := redistest.Prefix(tb, c)
			s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
			if err != nil {
				tb.Fatal(err)
			}
			// The guests' keys, not the budgets' (under the prefix too).
			return s, func() int {
				n := 0
				for _, k := range redistest.Keys(tb, c, prefix) {
					if !strings.HasPrefix(k, prefix+"budget:") {
						n++
					}
				}
				return n
			}
		}},
	}
	budgets := []struct {
		name      string
		budget    anonymous.Budget
		newClient bool
	}{
		{"budget-off", noBudget, false},
		{"budget-one-client", bigBudget, false},
		{"budget-client-per-visitor", bigBudget, true},
	}
	for _, st := range stores {
		for _, bu := range budgets {
			b.Run(st.name+"-"+bu.name, func(b *testing.B) {
				s, stored := st.open(b)
				_, h := budgetHandler(b, s, onIssue, bu.budget)
				var addrs []string
				if bu.newClient {
					addrs = make([]string, b.N)
					for i := range addrs {
						addrs[i] = "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255) + ":1234"
					}
				}
				var next atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					var id string
					r := request("", &id)
					w := &headerWriter{h: http.Header{}}
					for pb.Next() {
						if addrs != nil {
							r.RemoteAddr = addrs[next.Add(1)-1]
						}
						clear(w.h)
						id = ""
						h.ServeHTTP(w, r)
						if id == "" || w.h["Set-Cookie"] == nil {
							b.Errorf("new visitor: id %q, no cookie", id)
							return
						}
					}
				})
				b.StopTimer()
				if n := stored(); n != b.N {
					b.Fatalf("%d guests stored for %d new visitors: the budget refused some", n, b.N)
				}
			})
		}
	}
}

// countingLimiter allows every guest and counts the calls.
type countingLimiter struct{ calls atomic.Int64 }

func (l *countingLimiter) Take(context.Context, []anonymous.Charge) (time.Duration, error) {
	l.calls.Add(1)
	return 0, nil
}

func (l *countingLimiter) Refund(context.Context, []anonymous.Charge) error { return nil }

// TestBudgetCalls counts, on memstore, the limiter calls and store
// operations of storing a new guest and of a returning guest, with the
// budget on: one Allow before each Create, none for a returning guest.
func TestBudgetCalls(t *testing.T) {
	for _, p := range []bool{onIssue, onReturn} {
		t.Run(map[bool]string{onIssue: "PersistOnIssue", onReturn: "PersistOnReturn"}[p], func(t *testing.T) {
			cs := &countingStore{Store: newMemstore(t)}
			l := &countingLimiter{}
			_, h := budgetHandler(t, cs, p, anonymous.Budget{Limiter: l})
			count := func(what string, f func(), allows, ops int64) {
				t.Helper()
				l.calls.Store(0)
				cs.calls.Store(0)
				f()
				if a, o := l.calls.Load(), cs.calls.Load(); a != allows || o != ops {
					t.Fatalf("%s: %d limiter calls, %d store operations; want %d, %d", what, a, o, allows, ops)
				}
			}
			var id, ck string
			if p == onIssue {
				count("new visitor", func() { id, ck = visit(h, "") }, 1, 1)
			} else {
				count("new visitor", func() { id, ck = visit(h, "") }, 0, 0)
				// A read, in case a sibling request of the page stored the
				// guest already (it would then cost no budget), then the
				// Allow and the Create.
				count("its first return", func() {
					var got string
					if got, ck = visit(h, ck); got != id || ck == "" {
						t.Fatalf("first return: id %q, cookie %q; want %q and a new cookie", got, ck, id)
					}
				}, 1, 2)
			}
			for range 3 {
				count("returning guest", func() {
					if got, set := visit(h, ck); got != id || set != "" {
						t.Fatalf("returning guest: id %q, Set-Cookie %q; want %q, none", got, set, id)
					}
				}, 0, 1)
			}
		})
	}
}

// TestBudgetRoundTrips counts the Redis round trips of storing a new guest
// with the budget on (redisstore's limiter: one script call, then the
// Create's SET) and off, and of a returning guest (a GET, no limiter
// call). The limiter's script is loaded first, as on any server after its
// first call.
func TestBudgetRoundTrips(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T, p bool, b anonymous.Budget) (*redisstore.Store, *roundTrips, *anonymous.Manager, http.Handler) {
		s, rt := countedRedis(t)
		warmUp := []anonymous.Charge{{Key: "script warm-up", Level: anonymous.DefaultLevels()[0]}}
		if _, err := s.Take(ctx, warmUp); err != nil {
			t.Fatal(err)
		}
		m, h := budgetHandler(t, s, p, b)
		return s, rt, m, h
	}
	want := func(t *testing.T, what string, trips int, cmds []string, expect ...string) {
		t.Helper()
		if trips != len(expect) || !slices.Equal(cmds, expect) {
			t.Fatalf("%s: %d round trips %v; want %d %v", what, trips, cmds, len(expect), expect)
		}
		t.Logf("%s: %v", what, cmds)
	}
	stored := func(t *testing.T, s *redisstore.Store, id string) {
		t.Helper()
		if _, err := s.Get(ctx, id); err != nil {
			t.Fatalf("guest %s not stored: %v", id, err)
		}
	}

	t.Run("PersistOnIssue", func(t *testing.T) {
		for _, on := range []bool{true, false} {
			b, expect, label := noBudget, []string{"set"}, "budget off"
			if on {
				b, expect, label = anonymous.Budget{}, []string{"evalsha budget", "set"}, "budget on"
			}
			s, rt, _, h := setup(t, onIssue, b)
			var id, ck string
			trips, cmds := rt.measure(t, func() { id, ck = visit(h, "") })
			want(t, "new visitor, "+label, trips, cmds, expect...)
			stored(t, s, id)
			for range 2 {
				var got string
				trips, cmds = rt.measure(t, func() { got, _ = visit(h, ck) })
				if got != id {
					t.Fatalf("returning guest is %q, want %q", got, id)
				}
				want(t, "returning guest, "+label, trips, cmds, "get")
			}
		}
	})

	t.Run("PersistOnReturn", func(t *testing.T) {
		s, rt, _, h := setup(t, onReturn, anonymous.Budget{})
		var id, ck string
		trips, cmds := rt.measure(t, func() { id, ck = visit(h, "") })
		want(t, "new visitor", trips, cmds)
		var got string
		trips, cmds = rt.measure(t, func() { got, ck = visit(h, ck) })
		if got != id || ck == "" {
			t.Fatalf("first return: id %q, cookie %q; want %q and a new cookie", got, ck, id)
		}
		want(t, "its first return", trips, cmds, "get", "evalsha budget", "set")
		stored(t, s, id)
		trips, cmds = rt.measure(t, func() { got, _ = visit(h, ck) })
		want(t, "returning guest", trips, cmds, "get")
	})

	t.Run("PersistOnReturn, stored by UpdateData", func(t *testing.T) {
		for _, on := range []bool{true, false} {
			b, expect, label := noBudget, []string{"set"}, "budget off"
			if on {
				b, expect, label = anonymous.Budget{}, []string{"evalsha budget", "set"}, "budget on"
			}
			s, rt, m, _ := setup(t, onReturn, b)
			h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := anonymous.UpdateJSON(m, w, r, func(c *cart) error { *c = newCart(); return nil }); err == nil {
					report(r, anonymous.UserFrom(r.Context()).ID)
				}
			}))
			var id string
			trips, cmds := rt.measure(t, func() { id, _ = visit(h, "") })
			if id == "" {
				t.Fatal("UpdateJSON on a first visit failed")
			}
			want(t, "first visit with UpdateData, "+label, trips, cmds, expect...)
			stored(t, s, id)
		}
	})

	t.Run("over budget", func(t *testing.T) {
		s, rt, _, h := setup(t, onIssue, anonymous.Budget{Levels: []anonymous.Level{{By: "ipv4/32", Burst: 1, Rate: 1, Period: time.Hour}, {By: "ipv6/64", Burst: 1, Rate: 1, Period: time.Hour}}})
		visit(h, "") // the client's one guest
		var id, ck string
		trips, cmds := rt.measure(t, func() { id, ck = visit(h, "") })
		if id == "" || ck == "" {
			t.Fatalf("new visitor over budget: id %q, cookie %q; want a guest in its cookie", id, ck)
		}
		want(t, "new visitor over budget (guest not stored)", trips, cmds, "evalsha budget")
		if _, err := s.Get(ctx, id); err == nil {
			t.Fatalf("guest %s stored although over budget", id)
		}
	})
}
