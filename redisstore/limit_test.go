package redisstore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/internal/storegate"
	"github.com/guestpass/anonymous/redisstore"
)

// Take is all or none, in one script: a charge over its budget takes
// nothing from the others; Refund gives back what Take took. On a Cluster
// the keys of one call share a slot.
func TestLimiterAllOrNothing(t *testing.T) {
	for name, client := range topologies {
		t.Run(name, func(t *testing.T) {
			s := storeOn(t, client(t))
			ctx := context.Background()
			fine := anonymous.Charge{Key: "ipv6/64 2001:db8::/64", Level: anonymous.Level{By: "ipv6/64", Burst: 2, Rate: 1, Period: time.Hour}}
			tight := anonymous.Charge{Key: "ipv6/48 2001:db8::/48", Level: anonymous.Level{By: "ipv6/48", Burst: 1, Rate: 1, Period: time.Hour}}
			if wait, err := s.Take(ctx, []anonymous.Charge{fine, tight}); wait != 0 || err != nil {
				t.Fatalf("first guest: %v, %v", wait, err)
			}
			if wait, err := s.Take(ctx, []anonymous.Charge{fine, tight}); err != nil || wait <= 0 || wait > time.Hour {
				t.Fatalf("second guest: wait %v, %v; want up to an hour (tight is spent)", wait, err)
			}
			if wait, err := s.Take(ctx, []anonymous.Charge{fine}); wait != 0 || err != nil {
				t.Fatalf("a refused take spent fine's budget: %v, %v", wait, err)
			}
			if err := s.Refund(ctx, []anonymous.Charge{fine, tight}); err != nil {
				t.Fatal(err)
			}
			if wait, err := s.Take(ctx, []anonymous.Charge{tight}); wait != 0 || err != nil {
				t.Fatalf("a refunded guest was not given back: %v, %v", wait, err)
			}
		})
	}
}

// floodSignIns sends sign-in/anonymous from each address through a Manager
// with the default levels on s, and returns how many were stored.
func floodSignIns(t *testing.T, s *redisstore.Store, addrs []string) int {
	m := manager(t, s, anonymous.Options{Budget: anonymous.Budget{Levels: anonymous.DefaultLevels()}})
	h := m.Middleware(whoami)
	stored := 0
	for _, a := range addrs {
		r := httptest.NewRequest("POST", "/api/auth/sign-in/anonymous", nil)
		r.RemoteAddr = a
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			stored++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("sign-in from %s: %d %s", a, w.Code, w.Body)
		}
	}
	return stored
}

// A flood from the /64s of one /48, or from 6to4 addresses of one IPv4
// address, stores the /48's (or the IPv4 address's) burst, on Redis as in
// memory; the budget's keys live under the store's prefix, so that a run
// with a fixed prefix, cleaned between runs, stores the same each time.
func TestFloodsOnRedis(t *testing.T) {
	for name, client := range topologies {
		t.Run(name, func(t *testing.T) {
			c := client(t)
			prefix := redistest.Prefix(t, c)
			var block, sixToFour []string
			for i := range 300 {
				block = append(block, fmt.Sprintf("[2001:db8:7:%x::1]:1", i*211%65536))
			}
			for i := range 40 {
				sixToFour = append(sixToFour, fmt.Sprintf("[2002:c000:201:%x::1]:1", i))
			}
			for run := range 3 {
				s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
				if err != nil {
					t.Fatal(err)
				}
				if n := floodSignIns(t, s, block); n != 200 {
					t.Fatalf("run %d: 300 /64s of one /48 stored %d guests, want 200", run, n)
				}
				if n := floodSignIns(t, s, sixToFour); n != 20 {
					t.Fatalf("run %d: 6to4 addresses of one IPv4 address stored %d guests, want 20", run, n)
				}
				keys := redistest.Keys(t, c, prefix)
				budgets := 0
				for _, k := range keys {
					if strings.HasPrefix(k, prefix+"budget:{") {
						budgets++
					}
				}
				if budgets < 4 || len(keys) != 220+budgets {
					t.Fatalf("run %d: %d keys under the prefix, %d of them budgets; want 220 guests and the budgets", run, len(keys), budgets)
				}
				if stray := redistest.Keys(t, c, "rate:"+prefix); len(stray) > 0 {
					t.Fatalf("run %d: budget keys outside the prefix: %v", run, stray)
				}
				for _, k := range keys { // clean up by prefix, as an operator would
					c.Del(context.Background(), k)
				}
			}
		})
	}
}

// Concurrent first returns of one first-visit cookie cost its client one
// guest on Redis too: the ones a sibling beat are refunded in Redis. Of 8,
// the burst of 3 are charged and reach the store, which holds them until
// all 3 wait there.
func TestConcurrentFirstReturnsRefundedInRedis(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	guests := func() int {
		n := 0
		for _, k := range redistest.Keys(t, c, prefix) {
			if !strings.HasPrefix(k, prefix+"budget:") {
				n++
			}
		}
		return n
	}
	gate := storegate.New(s, 3)
	levels := []anonymous.Level{{By: "ipv4/32", Burst: 3, Rate: 1, Period: time.Hour}}
	h := manager(t, gate, anonymous.Options{Budget: anonymous.Budget{Levels: levels}}).Middleware(whoami)
	visit := func(ck []*http.Cookie) []*http.Cookie {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "192.0.2.55:1"
		for _, k := range ck {
			r.AddCookie(k)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result().Cookies()
	}
	first := visit(nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { visit(first) })
	}
	wg.Wait()
	if n := guests(); n != 1 {
		t.Fatalf("%d guests stored by one cookie's first returns, want 1", n)
	}
	// Two more new guests fit the burst of 3, and no third.
	for range 4 {
		visit(visit(nil))
	}
	stored := guests() - 1
	if stored != 2 {
		t.Fatalf("after one guest's 8 concurrent first returns, the client stored %d more, want the 2 left of its burst", stored)
	}
}
