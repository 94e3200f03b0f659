package anonymous_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
)

// A 100 KB User-Agent costs the store at most its 512-byte cap: memstore
// keeps no slice of the request's header alive.
func TestHugeUserAgentIsNotKept(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true, Budget: anonymous.Budget{Off: true}})
	const guests = 200
	ua := strings.Repeat("x", 100<<10)
	handler := f.m.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	serve := func() {
		r := httptest.NewRequest("GET", "https://shop.example/", nil)
		r.Header.Set("User-Agent", strings.Clone(ua)) // a header of its own, as a server reads it
		handler.ServeHTTP(httptest.NewRecorder(), r)
	}
	serve() // warm up pools and maps
	before := heapInUse()
	for range guests {
		serve()
	}
	perGuest := (heapInUse() - before) / guests
	if f.store.creates.Load() != guests+1 {
		t.Fatalf("%d guests stored, want %d", f.store.creates.Load(), guests+1)
	}
	if perGuest > 2<<10 {
		t.Errorf("%d heap bytes per guest with a 100 KB User-Agent, want at most 2 KB", perGuest)
	}
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// Session.IPAddress is an address or nothing, whatever RemoteAddr holds.
func TestIPAddressIsParsed(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:41234":            "192.0.2.7",
		"[2001:db8::1]:443":          "2001:db8::1",
		"[::ffff:192.0.2.8]:80":      "192.0.2.8",
		"192.0.2.9":                  "192.0.2.9",
		"203.0.113.1, 198.51.100.2":  "",
		strings.Repeat("1", 100<<10): "",
		"":                           "",
	} {
		f := newFixture(t, anonymous.Options{PersistOnIssue: true})
		var got *anonymous.Session
		h := f.m.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = anonymous.SessionFrom(r.Context()) }))
		r := httptest.NewRequest("GET", "https://shop.example/", nil)
		r.RemoteAddr = remote
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got == nil || got.IPAddress != want {
			t.Errorf("RemoteAddr %.40q: session %v, want IPAddress %q", remote, got, want)
		}
	}
}

// slowWrites delays every Update, as a store far away would.
type slowWrites struct {
	*countingStore
	delay time.Duration
}

func (s slowWrites) Update(ctx context.Context, key string, e anonymous.Entry) error {
	time.Sleep(s.delay)
	return s.countingStore.Update(ctx, key, e)
}

// A callback that honours its context never outlives the link's lease, even
// when the store is slow: it cannot run to success twice.
func TestCallbackEndsBeforeItsLease(t *testing.T) {
	for takes, want := range map[time.Duration]int64{
		500 * time.Millisecond: 1, // fits in the lease: links once
		900 * time.Millisecond: 0, // does not: cancelled each time, never twice
	} {
		t.Run(takes.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testCallbackEndsBeforeItsLease(t, takes, want) })
		})
	}
}

func testCallbackEndsBeforeItsLease(t *testing.T, takes time.Duration, want int64) {
	base := newFixture(t, anonymous.Options{PersistOnIssue: true})
	var succeeded atomic.Int64
	m, err := anonymous.New(slowWrites{base.store, 150 * time.Millisecond}, anonymous.Options{
		Keys: []anonymous.Key{{Hash: hashKey1}}, LinkLease: time.Second,
		ErrorLog: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnLinkAccount: func(ctx context.Context, _ anonymous.LinkEvent) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(takes):
				succeeded.Add(1)
				return nil
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := base.send(t, "GET", "/")
	c := guestCookie(t, w)
	link := func() {
		r := httptest.NewRequest("POST", "/login", nil)
		r.AddCookie(c)
		m.Link(httptest.NewRecorder(), r, &anonymous.User{ID: "alice"})
	}
	go link()
	time.Sleep(1010 * time.Millisecond) // just past the first link's lease
	link()
	synctest.Wait()
	if n := succeeded.Load(); n != want {
		t.Errorf("the callback ran to success %d times, want %d", n, want)
	}
}

// Link on a login that brought no guest cookie does nothing: no store write,
// no claim, no callback, whatever guest the middleware issued on the way.
func TestLinkWithoutGuestCookieDoesNothing(t *testing.T) {
	for _, p := range []bool{onReturn, onIssue} {
		c := newCarts()
		f := newFixture(t, anonymous.Options{PersistOnIssue: p, OnLinkAccount: c.onLink})
		var err error
		h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			err = f.m.Link(w, r, &anonymous.User{ID: "bob"})
		}))
		for range 10 {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/login", nil))
			if err != nil {
				t.Fatalf("Link: %v", err)
			}
		}
		wantCreates := map[bool]int64{onReturn: 0, onIssue: 10}[p]
		if c.calls.Load() != 0 || f.store.claims.Load() != 0 || f.store.deletes.Load() != 0 || f.store.creates.Load() != wantCreates {
			t.Errorf("PersistOnIssue %v: %d callbacks, %d claims, %d deletes, %d creates; want none but %d creates",
				p, c.calls.Load(), f.store.claims.Load(), f.store.deletes.Load(), f.store.creates.Load(), wantCreates)
		}
	}
}

// The middleware never weakens a Cache-Control an outer handler set.
func TestCacheControlIsNotWeakened(t *testing.T) {
	for set, want := range map[string]string{
		"":                      `no-cache="Set-Cookie"`,
		"private, no-store":     "private, no-store",
		"no-store":              "no-store",
		"no-cache":              "no-cache",
		"public, max-age=60":    `public, max-age=60, no-cache="Set-Cookie"`,
		`no-cache="Set-Cookie"`: `no-cache="Set-Cookie"`,
	} {
		f := newFixture(t, anonymous.Options{})
		outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if set != "" {
				w.Header().Set("Cache-Control", set)
			}
			f.h.ServeHTTP(w, r)
		})
		w := httptest.NewRecorder()
		outer.ServeHTTP(w, httptest.NewRequest("GET", "https://shop.example/", nil))
		if got := w.Header().Values("Cache-Control"); !slices.Equal(got, []string{want}) || guestCookie(t, w) == nil {
			t.Errorf("outer %q: Cache-Control %q, want %q (with a guest cookie)", set, got, want)
		}
	}
}

// A cookie in a non-canonical base64 spelling (other padding bits) is not
// the cookie it decodes to.
func TestNonCanonicalBase64IsRefused(t *testing.T) {
	for _, keys := range [][]anonymous.Key{{{Hash: hashKey1}}, {{Hash: hashKey1, Block: []byte("0123456789abcdef")}}} {
		f := newFixture(t, anonymous.Options{Keys: keys, PersistOnIssue: true})
		var c *http.Cookie
		var id string
		for c == nil || !strings.Contains(c.Value, "=") { // a value with padding bits
			w, s := f.send(t, "GET", "/")
			c, id = guestCookie(t, w), s.ID
		}
		i := strings.IndexByte(c.Value, '=') - 1
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		other := alphabet[strings.IndexByte(alphabet, c.Value[i])^1]
		odd := c.Value[:i] + string(other) + c.Value[i+1:]
		if _, err := base64.URLEncoding.DecodeString(odd); err != nil {
			t.Fatalf("the altered value is not base64 at all: %v", err)
		}
		if _, s := f.send(t, "GET", "/", withCookie(&http.Cookie{Name: c.Name, Value: odd})); s.ID == id {
			t.Errorf("keys %d: a non-canonical spelling of the cookie was accepted", len(keys[0].Block))
		}
		if _, s := f.send(t, "GET", "/", withCookie(c)); s.ID != id {
			t.Errorf("the canonical cookie then saw %q, want %q", s.ID, id)
		}
	}
}

// Of several guest cookies (one tossed in by a sibling subdomain), the one
// that verifies counts, and no new guest is issued over it.
func TestTossedCookieDoesNotReplaceTheGuest(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true, CookieName: "anonymous_guest"})
	w, g := f.send(t, "GET", "/")
	real := guestCookie(t, w)
	tossed := &http.Cookie{Name: real.Name, Value: "x"}
	for name, order := range map[string][]*http.Cookie{"tossed first": {tossed, real}, "tossed last": {real, tossed}} {
		w, s := f.send(t, "GET", "/", withCookie(order...))
		if s.ID != g.ID || len(w.Header()["Set-Cookie"]) != 0 {
			t.Errorf("%s: saw %q with Set-Cookie %q, want the guest %q untouched", name, s.ID, w.Header()["Set-Cookie"], g.ID)
		}
	}
}

// By default the cookie is a __Host- cookie, which no other host can set;
// New refuses a prefixed name whose rules the options break, and a setting
// that cannot keep the default name without a name of its own, which would
// drop every guest issued under the other name.
func TestHostPrefixedCookieName(t *testing.T) {
	for opts, want := range map[*anonymous.Options]string{
		{}:                   defaultCookie,
		{CookiePath: "/"}:    defaultCookie,
		{CookieName: "mine"}: "mine",
		{CookieName: "anonymous_guest", CookieInsecure: true}:             "anonymous_guest",
		{CookieName: "g", CookieDomain: "shop.test", CookiePath: "/shop"}: "g",
	} {
		m, err := anonymous.New(newFixture(t, anonymous.Options{}).store, *opts)
		if err != nil || m.CookieName() != want {
			t.Fatalf("%+v: New = %v; want cookie %q", *opts, err, want)
		}
	}
	for opts, names := range map[*anonymous.Options]string{
		{CookieInsecure: true}:                         "CookieInsecure",
		{CookieDomain: "shop.test"}:                    "CookieDomain",
		{CookiePath: "/shop"}:                          "CookiePath",
		{CookieInsecure: true, CookieDomain: "s.test"}: "CookieInsecure and CookieDomain",
	} {
		_, err := anonymous.New(newFixture(t, anonymous.Options{}).store, *opts)
		if !errors.Is(err, anonymous.ErrInvalidOptions) || !strings.Contains(err.Error(), names) ||
			!strings.Contains(err.Error(), `set CookieName too, to "anonymous_guest"`) {
			t.Errorf("%+v: New = %v; want ErrInvalidOptions naming %s and the name to set", *opts, err, names)
		}
	}
	for _, o := range []anonymous.Options{
		{CookieName: "__Host-g", CookieDomain: "shop.test"},
		{CookieName: "__Host-g", CookiePath: "/shop"},
		{CookieName: "__Host-g", CookieInsecure: true},
		{CookieName: "__Secure-g", CookieInsecure: true},
	} {
		if _, err := anonymous.New(newFixture(t, anonymous.Options{}).store, o); !errors.Is(err, anonymous.ErrInvalidOptions) {
			t.Errorf("%+v: New = %v, want ErrInvalidOptions", o, err)
		}
	}
}
