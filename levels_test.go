package anonymous_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/storegate"
	"github.com/guestpass/anonymous/memstore"
)

// signIns sends sign-in/anonymous from each address and returns how many
// guests were stored.
func signIns(t *testing.T, f *fixture, addrs []string) int64 {
	t.Helper()
	before := f.store.creates.Load()
	for _, a := range addrs {
		w, _ := f.send(t, "POST", "/api/auth/sign-in/anonymous", withRemote(a))
		if w.Code != http.StatusOK && w.Code != http.StatusTooManyRequests {
			t.Fatalf("sign-in from %s: %d %s", a, w.Code, w.Body)
		}
	}
	return f.store.creates.Load() - before
}

// A script that hops over the /64s, and /56s, of one IPv6 /48 stores at
// most the /48's burst, not 20 per /64: 65,536 /64s are one budget.
func TestFloodFromOneIPv6Block(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{})
		var addrs []string
		for i := range 600 {
			addrs = append(addrs, fmt.Sprintf("[2001:db8:1:%x::1]:1", i*97%65536))
		}
		if n := signIns(t, f, addrs); n != 200 {
			t.Fatalf("600 /64s of one /48 stored %d guests, want the /48's burst of 200", n)
		}
		// One /56 alone: its burst of 50.
		g := newFixture(t, anonymous.Options{})
		addrs = addrs[:0]
		for i := range 200 {
			addrs = append(addrs, fmt.Sprintf("[2001:db8:2:%x::1]:1", 0x4200+i%256))
		}
		if n := signIns(t, g, addrs); n != 50 {
			t.Fatalf("the /64s of one /56 stored %d guests, want its burst of 50", n)
		}
		// Another /48 is another budget.
		if n := signIns(t, f, []string{"[2001:db8:9::1]:1"}); n != 1 {
			t.Fatalf("another /48's guest: %d stored", n)
		}
	})
}

// Addresses that embed an IPv4 address are that address's: 6to4 from any
// of its 65,536 /48s, Teredo, and IPv4-mapped all share 192.0.2.1's 20.
func TestFloodFromEmbeddedIPv4(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{})
		var addrs []string
		for i := range 40 {
			addrs = append(addrs,
				fmt.Sprintf("[2002:c000:201:%x::1]:1", i),                // 6to4 of 192.0.2.1
				fmt.Sprintf("[2001:0:4136:e378:8000:%x:3fff:fdfe]:1", i), // Teredo of 192.0.2.1
				"[::ffff:192.0.2.1]:1")
		}
		addrs = append(addrs, "192.0.2.1:1")
		if n := signIns(t, f, addrs); n != 20 {
			t.Fatalf("one IPv4 address, through addresses that embed it, stored %d guests, want its burst of 20", n)
		}
		if n := signIns(t, f, []string{"[2002:c000:202::1]:1"}); n != 1 {
			t.Fatalf("6to4 of another IPv4 address: %d stored", n)
		}
	})
}

// A site-wide level caps the new guests the whole site stores.
func TestSiteLevel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		levels := append(anonymous.DefaultLevels(), anonymous.Level{By: "site", Burst: 5, Rate: 10, Period: time.Hour})
		f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: levels}})
		var addrs []string
		for i := range 30 {
			addrs = append(addrs, fmt.Sprintf("198.51.100.%d:1", i+1))
		}
		if n := signIns(t, f, addrs); n != 5 {
			t.Fatalf("30 clients stored %d guests, want the site's burst of 5", n)
		}
	})
}

// Concurrent first returns of one first-visit cookie (a page's parallel
// requests, before any has stored the guest) cost its client one guest:
// the ones a sibling beat are refunded.
func TestConcurrentFirstReturnsCostOneGuest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{})
		const addr = "203.0.113.9:1"
		w, _ := f.send(t, "GET", "/", withRemote(addr))
		c := guestCookie(t, w)
		// Every first return is charged before any stores the guest.
		gate := storegate.New(f.store.Store, 10)
		f.store.Store = gate
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() { f.send(t, "GET", "/", withRemote(addr), withCookie(c)) })
		}
		wg.Wait()
		f.store.Store = gate.Store
		if n := f.store.creates.Load(); n < 1 {
			t.Fatalf("no first return stored the guest")
		}
		// 19 more new guests fit the client's burst of 20, and no more.
		before := f.store.creates.Load()
		for range 25 {
			newcomer(t, f, addr)
		}
		if n := f.store.creates.Load() - before; n != 19 {
			t.Fatalf("after one guest's concurrent first returns, the client stored %d more, want the 19 left of its burst", n)
		}
	})
}

// Clients over budget are logged at most once a minute, with a client and
// how many were refused.
func TestRefusalsLoggedOnceAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 1)}})
		var addrs []string
		for range 30 {
			addrs = append(addrs, "203.0.113.5:1")
		}
		signIns(t, f, addrs)
		if n := strings.Count(f.logs.String(), "over their guest budget"); n != 1 {
			t.Fatalf("%d log lines for 29 refusals within a minute, want 1:\n%s", n, f.logs)
		}
		time.Sleep(time.Minute)
		signIns(t, f, addrs[:5])
		logs := f.logs.String()
		if n := strings.Count(logs, "over their guest budget"); n != 2 || !strings.Contains(logs, "refused=") || !strings.Contains(logs, "203.0.113.5") {
			t.Fatalf("after a minute: %d lines, want 2 naming the client and the count:\n%s", n, logs)
		}
	})
}

// Data grows after a guest is stored, which the budget never sees: past
// memstore's MaxBytes an update that grows it is refused, ErrStoreFull, and
// the guest keeps its data as it was.
func TestUpdateDataOnAFullStore(t *testing.T) {
	ms := newMemstore(t, memstore.Options{MaxBytes: guestBytes})
	f := newFixtureOn(t, ms, anonymous.Options{PersistOnIssue: true, Budget: anonymous.Budget{Off: true}})
	w, g := f.send(t, "GET", "/")
	r := httptest.NewRequest("GET", "https://shop.example/", nil)
	r.AddCookie(guestCookie(t, w))
	var err error
	f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err = f.m.UpdateData(w, r, func([]byte) ([]byte, error) { return make([]byte, 1000), nil })
	})).ServeHTTP(httptest.NewRecorder(), r)
	if !errors.Is(err, anonymous.ErrStoreFull) {
		t.Fatalf("UpdateData past MaxBytes: %v, want ErrStoreFull", err)
	}
	if rec, err := f.m.Record(context.Background(), g.ID); err != nil || len(rec.Data) != 0 {
		t.Fatalf("the guest after a refused update: %+v, %v", rec, err)
	}
}
