package anonymous_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// newcomer is a script with a cookie jar: a first visit, then a return that
// would store the guest. It returns the return's answer and cookie.
func newcomer(t *testing.T, f *fixture, addr string) (*httptest.ResponseRecorder, *http.Cookie) {
	t.Helper()
	w, _ := f.send(t, "GET", "/", withRemote(addr))
	if w.Code != http.StatusOK {
		t.Fatalf("first visit: %d", w.Code)
	}
	c := guestCookie(t, w)
	w, _ = f.send(t, "GET", "/", withRemote(addr), withCookie(c))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"isAnonymous":true`) {
		t.Fatalf("return: %d %s", w.Code, w.Body)
	}
	if n := guestCookie(t, w); n != nil {
		c = n
	}
	return w, c
}

// With the default budget, a client that keeps cookies stores 20 guests at
// once and one more every 36 s (100 an hour); another client is unaffected,
// and nobody gets a 5xx.
func TestBudgetBoundsOneClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{})
		for range 50 {
			newcomer(t, f, "203.0.113.7:1000")
		}
		if n := f.store.creates.Load(); n != 20 {
			t.Fatalf("one client stored %d guests at once, want the burst of 20", n)
		}
		newcomer(t, f, "198.51.100.9:1000")
		if n := f.store.creates.Load(); n != 21 {
			t.Errorf("another client's guest was not stored: %d creates", n)
		}
		time.Sleep(time.Hour)
		for range 200 {
			newcomer(t, f, "203.0.113.7:1000")
		}
		if n := f.store.creates.Load(); n != 41 {
			t.Errorf("after an hour the client stored %d more, want 20 (the burst, refilled)", n-21)
		}
		start := f.store.creates.Load()
		for range 10 {
			time.Sleep(36 * time.Second)
			newcomer(t, f, "203.0.113.7:1000")
		}
		if n := f.store.creates.Load() - start; n != 10 {
			t.Errorf("one guest every 36 s: %d stored of 10", n)
		}
	})
}

// Over the budget a new visitor still gets a page and a guest, carried in its
// cookie and stored once the budget allows; a visitor whose guest is stored
// is never affected.
func TestOverBudgetLosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Minute, 1)}})
		const addr = "203.0.113.7:1000"
		_, stored := newcomer(t, f, addr) // the budget's one guest
		w, pending := newcomer(t, f, addr)
		var over struct{ ID string }
		json.Unmarshal(w.Body.Bytes(), &over)
		if f.store.creates.Load() != 1 || over.ID == "" {
			t.Fatalf("over the budget: %d creates, guest %q; want 1 and a guest", f.store.creates.Load(), over.ID)
		}
		// The stored guest comes back whatever the budget says.
		_, s := f.send(t, "GET", "/", withRemote(addr), withCookie(stored))
		if s.ID == "" || s.ID == over.ID {
			t.Errorf("the stored guest came back as %q", s.ID)
		}
		time.Sleep(time.Minute)
		w, _ = f.send(t, "GET", "/", withRemote(addr), withCookie(pending))
		var later struct{ ID string }
		json.Unmarshal(w.Body.Bytes(), &later)
		if later.ID != over.ID || f.store.creates.Load() != 2 || guestCookie(t, w) == nil {
			t.Errorf("a minute later the guest %q came back as %q with %d creates; want it stored", over.ID, later.ID, f.store.creates.Load())
		}
	})
}

// Addresses in one IPv6 /64 share a budget; other /64s have their own.
func TestBudgetIPv6Prefix(t *testing.T) {
	f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 2)}})
	for i := range 5 {
		newcomer(t, f, fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1))
	}
	if n := f.store.creates.Load(); n != 2 {
		t.Errorf("one /64 stored %d guests, want 2", n)
	}
	newcomer(t, f, "[2001:db8:1:3::1]:443")
	if n := f.store.creates.Load(); n != 3 {
		t.Errorf("another /64's guest was not stored: %d creates", n)
	}
	for addr, want := range map[string]string{
		"192.0.2.1:80":          "192.0.2.1",
		"[::ffff:192.0.2.1]:80": "::ffff:192.0.2.1",
		"[2001:db8::1]:80":      "2001:db8::1",
		"[fe80::1%eth0]:80":     "fe80::1",
		"2001:db8:0:0:ffff::1":  "2001:db8::ffff:0:0:1",
		"not an address":        "invalid IP",
	} {
		if got := anonymous.ClientAddr(addr); got.String() != want {
			t.Errorf("ClientAddr(%q) = %v, want %s", addr, got, want)
		}
	}
}

// sign-in/anonymous past the budget answers as Better Auth's rate limiter:
// 429, its message, and when to retry.
func TestSignInOverBudget(t *testing.T) {
	f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 2)}})
	for i := range 3 {
		w, _ := f.send(t, "POST", "/api/auth/sign-in/anonymous", withRemote("203.0.113.7:1000"))
		if i < 2 {
			if w.Code != http.StatusOK {
				t.Fatalf("sign-in %d: %d %s", i, w.Code, w.Body)
			}
			continue
		}
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || w.Header().Get("X-Retry-After") != w.Header().Get("Retry-After") {
			t.Fatalf("sign-in past the budget: %d, Retry-After %q, X-Retry-After %q", w.Code, w.Header().Get("Retry-After"), w.Header().Get("X-Retry-After"))
		}
		if secs := w.Header().Get("Retry-After"); secs != "3600" {
			t.Errorf("Retry-After %s s, want 3600 (1 guest an hour, once the burst of 2 is spent)", secs)
		}
		var e struct{ Code, Message string }
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Message != "Too many requests. Please try again later." || e.Code != "TOO_MANY_REQUESTS" {
			t.Errorf("body %s", w.Body)
		}
		if len(w.Header()["Set-Cookie"]) != 0 {
			t.Errorf("a refused sign-in set %q", w.Header()["Set-Cookie"])
		}
	}
	if w, _ := f.send(t, "POST", "/api/auth/sign-in/anonymous", withRemote("198.51.100.9:1000")); w.Code != http.StatusOK {
		t.Errorf("another client's sign-in: %d", w.Code)
	}
}

// With Off, nothing is counted.
func TestBudgetOff(t *testing.T) {
	f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Off: true}})
	for range 30 {
		newcomer(t, f, "203.0.113.7:1000")
	}
	if n := f.store.creates.Load(); n != 30 {
		t.Errorf("%d of 30 guests stored with the budget off", n)
	}
}

// A full memstore fails open: new visitors keep guests in their cookies,
// get pages, never a 5xx, and the log says so once a minute, not per request.
func TestFullStoreFailsOpen(t *testing.T) {
	ms := newMemstore(t, memstore.Options{MaxBytes: 2 * guestBytes})
	f := newFixtureOn(t, ms, anonymous.Options{Budget: anonymous.Budget{Off: true}})
	f.h = f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u := anonymous.UserFrom(r.Context()); u == nil || !u.IsAnonymous {
			t.Errorf("a visitor without a guest")
		}
	}))
	for i := range 10 {
		w, _ := f.send(t, "GET", "/", withRemote("203.0.113.7:1"))
		w, _ = f.send(t, "GET", "/", withRemote("203.0.113.7:1"), withCookie(guestCookie(t, w)))
		if w.Code != http.StatusOK {
			t.Fatalf("visitor %d: %d", i, w.Code)
		}
	}
	if n := ms.Len(); n != 2 {
		t.Errorf("the store holds %d guests, want its cap of 2", n)
	}
	if n := strings.Count(f.logs.String(), "the store is full"); n != 1 {
		t.Errorf("'store is full' logged %d times, want once", n)
	}
}

// Over the budget under PersistOnIssue, a new visitor's guest is generated
// once: the application's GenerateName runs once per visitor.
func TestOverBudgetIssuesOnce(t *testing.T) {
	var names int
	f := newFixture(t, anonymous.Options{PersistOnIssue: true, Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 1)},
		GenerateName: func(context.Context) string { names++; return "Quiet Marten" }})
	for range 2 {
		if w, _ := f.send(t, "GET", "/", withRemote("203.0.113.7:1000")); guestCookie(t, w) == nil {
			t.Fatal("no guest cookie")
		}
	}
	if names != 2 || f.store.creates.Load() != 1 {
		t.Errorf("GenerateName ran %d times for 2 visitors, %d stored; want 2 and 1", names, f.store.creates.Load())
	}
}

// perClient is a budget of burst guests at once, then rate per period, per
// client address: an IPv4 address or an IPv6 /64.
func perClient(rate int, period time.Duration, burst int) []anonymous.Level {
	return []anonymous.Level{
		{By: "ipv6/64", Burst: burst, Rate: rate, Period: period},
		{By: "ipv4/32", Burst: burst, Rate: rate, Period: period},
	}
}

// guestBytes is what memstore counts for a guest of these tests (no
// User-Agent, no data) against its MaxBytes, with room to spare for one
// and none for a second (TestGuestBytes checks it).
const guestBytes = 180

func TestGuestBytes(t *testing.T) {
	for n := 1; n <= 4; n++ {
		ms := newMemstore(t, memstore.Options{MaxBytes: int64(n) * guestBytes})
		f := newFixtureOn(t, ms, anonymous.Options{PersistOnIssue: true, Budget: anonymous.Budget{Off: true}})
		for range n + 1 {
			f.send(t, "GET", "/")
		}
		if got := ms.Len(); got != n {
			t.Errorf("MaxBytes %d × guestBytes holds %d guests, want %d", n, got, n)
		}
	}
}
