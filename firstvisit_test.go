package anonymous_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/storegate"
	"github.com/guestpass/anonymous/memstore"
)

// pageLoad sends n requests at once, each with cookie c: the first n/2 add
// an item each, the rest read the page. It returns the answers in order.
func pageLoad(t testing.TB, f *fixture, c *http.Cookie, n int) []*httptest.ResponseRecorder {
	t.Helper()
	out := make([]*httptest.ResponseRecorder, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			method, target := "GET", "/page"
			if i < n/2 {
				method, target = "POST", "/page?item="+strconv.Itoa(i)
			}
			<-start
			out[i], _ = f.send(t, method, target, withCookie(c))
		})
	}
	close(start)
	wg.Wait()
	return out
}

// sawOneGuest checks that every answer served the guest id with one token,
// not firstToken, and re-set the guest cookie; it returns the token and the
// last answer's cookie.
func sawOneGuest(t testing.TB, answers []*httptest.ResponseRecorder, id, firstToken string) (string, *http.Cookie) {
	t.Helper()
	var token string
	var last *http.Cookie
	for i, w := range answers {
		var s seen
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &s) != nil {
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
		}
		if s.ID != id {
			t.Fatalf("request %d saw guest %q, want %q", i, s.ID, id)
		}
		if token == "" {
			token = s.Token
		}
		if s.Token != token || s.Token == firstToken {
			t.Fatalf("request %d has token %q, want %q, not the first visit's", i, s.Token, token)
		}
		if last = guestCookie(t, w); last == nil {
			t.Fatalf("request %d set no guest cookie", i)
		}
	}
	return token, last
}

// Every request of a page that carries a first-visit cookie, 8 or 64 at
// once, is served the one guest, its data readable and updatable, and is
// handed the same new cookie; one record is stored.
func TestSiblingsOfAFirstReturnShareTheGuest(t *testing.T) {
	for _, n := range []int{8, 64} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			ms := newMemstore(t, memstore.Options{})
			// Each sibling is charged to the budget until one of them has
			// stored the guest: turn it off for 64.
			f := newFixtureOn(t, ms, anonymous.Options{Budget: anonymous.Budget{Off: n > 16}})
			w, first := f.send(t, "GET", "/page")
			answers := pageLoad(t, f, guestCookie(t, w), n)
			_, short := sawOneGuest(t, answers, first.ID, first.Token)
			if ms.Len() != 1 {
				t.Errorf("%d records stored, want 1", ms.Len())
			}
			// Every update counted, and the new cookie opens the guest.
			if w, _ := f.send(t, "GET", "/page", withCookie(short)); w.Header().Get("X-Cart") != strconv.Itoa(n/2) {
				t.Errorf("the cart holds %s items after %d adds", w.Header().Get("X-Cart"), n/2)
			}
		})
	}
}

// The grace is 10 s from the moment the guest was first stored: a copy of
// the first-visit cookie within it is a sibling, one after it (a copy
// planted in another browser) gets a guest of its own, and cannot read the
// first one's data.
func TestFirstVisitCopyAfterTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{})
		w, first := f.send(t, "GET", "/page")
		long := guestCookie(t, w)
		time.Sleep(time.Minute) // the grace counts from the store, not the issue
		w, _ = f.send(t, "POST", "/page?item=tea", withCookie(long))
		token, _ := sawOneGuest(t, []*httptest.ResponseRecorder{w}, first.ID, first.Token)

		time.Sleep(10*time.Second - time.Millisecond)
		w, _ = f.send(t, "GET", "/page", withCookie(long))
		if got, _ := sawOneGuest(t, []*httptest.ResponseRecorder{w}, first.ID, first.Token); got != token {
			t.Fatalf("a sibling within the grace got token %q, want %q", got, token)
		}
		if w.Header().Get("X-Cart") != "1" {
			t.Errorf("a sibling within the grace saw a cart of %s, want 1", w.Header().Get("X-Cart"))
		}

		time.Sleep(time.Millisecond)
		w, late := f.send(t, "GET", "/page", withCookie(long))
		if late.ID == "" || late.ID == first.ID || w.Header().Get("X-Cart") != "0" {
			t.Errorf("a copy after the grace saw guest %q with a cart of %s, want a new guest of its own (first %q)",
				late.ID, w.Header().Get("X-Cart"), first.ID)
		}
	})
}

// Keys rotate during the grace: a sibling served by an instance that has
// put a new key first still derives the token the old key stored.
func TestSiblingAcrossKeyRotation(t *testing.T) {
	ms := newMemstore(t, memstore.Options{})
	old := newFixtureOn(t, ms, anonymous.Options{Keys: []anonymous.Key{{Hash: hashKey1}}})
	rotated := newFixtureOn(t, ms, anonymous.Options{Keys: []anonymous.Key{{Hash: hashKey2}, {Hash: hashKey1}}})
	w, first := old.send(t, "GET", "/page")
	long := guestCookie(t, w)
	a, _ := old.send(t, "POST", "/page?item=tea", withCookie(long))
	b, _ := rotated.send(t, "GET", "/page", withCookie(long))
	token, _ := sawOneGuest(t, []*httptest.ResponseRecorder{a, b}, first.ID, first.Token)
	if b.Header().Get("X-Cart") != "1" {
		t.Errorf("the sibling on the rotated instance saw a cart of %s, want 1", b.Header().Get("X-Cart"))
	}
	// An instance that knows the new key, not yet first (the usual first
	// step of a rotation), finds a guest the rotated instance stored.
	prepared := newFixtureOn(t, ms, anonymous.Options{Keys: []anonymous.Key{{Hash: hashKey1}, {Hash: hashKey2}}})
	w, first = old.send(t, "GET", "/page")
	long = guestCookie(t, w)
	a, _ = rotated.send(t, "GET", "/page", withCookie(long))
	b, _ = prepared.send(t, "GET", "/page", withCookie(long))
	if got, _ := sawOneGuest(t, []*httptest.ResponseRecorder{a, b}, first.ID, first.Token); got == token {
		t.Error("two guests share a token")
	}
	if rec, err := storedRecord(ms, first.ID); err != nil || rec.Version != 1 {
		t.Errorf("stored record %+v, %v; want one, written once", rec, err)
	}
}

// UpdateData after the response has started returns nil, but the browser
// keeps its first-visit cookie: its next request within the grace still
// finds the guest and its data, one after it does not.
func TestUpdateDataAfterTheResponseStarted(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		keeps bool
	}{{10*time.Second - time.Millisecond, true}, {10 * time.Second, false}} {
		t.Run(tc.after.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, anonymous.Options{})
				f.mux.HandleFunc("/late", func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(http.StatusOK) // the header is gone
					if _, err := anonymous.UpdateJSON(f.m, w, r, func(c *cart) error {
						*c = cart{"tea": 1}
						return nil
					}); err != nil {
						t.Errorf("UpdateJSON after the header was written: %v", err)
					}
				})
				w, _ := f.send(t, "GET", "/late")
				long := guestCookie(t, w)
				if long == nil || long.MaxAge != 3600 {
					t.Fatalf("the first answer's cookie is %+v, want the first-visit one", long)
				}
				time.Sleep(tc.after)
				w, _ = f.send(t, "GET", "/page", withCookie(long))
				if got := w.Header().Get("X-Cart") == "1"; got != tc.keeps {
					t.Errorf("%v later the cart holds %s item(s); kept: %v, want %v", tc.after, w.Header().Get("X-Cart"), got, tc.keeps)
				}
				if c := guestCookie(t, w); tc.keeps && (c == nil || c.MaxAge == 3600) {
					t.Errorf("%v later the cookie is %+v, want the stored guest's", tc.after, c)
				}
			})
		})
	}
}

// A page's requests that the client's budget refuses (all but those it
// charged) are siblings all the same: each is served the guest a charged one
// stores, its data updatable, and handed its cookie, not the first-visit
// cookie again. The store holds the charged requests' Creates back until the
// others have been refused. The page loads past half the FirstVisitWindow,
// when a request served the guest held in its cookie would re-set that
// cookie: whichever answer the browser keeps last still opens the guest
// after the grace.
func TestSiblingsRefusedByTheBudget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		levels []anonymous.Level
	}{
		{"one guest left", 8, perClient(1, time.Hour, 1)},
		{"default levels", 64, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: tc.levels}})
				w, first := f.send(t, "GET", "/page")
				time.Sleep(31 * time.Minute)
				gate := storegate.New(f.store.Store, tc.n)
				f.store.Store = gate
				answers := pageLoad(t, f, guestCookie(t, w), tc.n)
				f.store.Store = gate.Store
				sawOneGuest(t, answers, first.ID, first.Token)
				time.Sleep(10 * time.Second)
				for i, a := range answers {
					w, later := f.send(t, "GET", "/page", withCookie(guestCookie(t, a)))
					if later.ID != first.ID || w.Header().Get("X-Cart") != strconv.Itoa(tc.n/2) {
						t.Fatalf("after the grace, answer %d's cookie opens guest %q with a cart of %s, want %q with %d",
							i, later.ID, w.Header().Get("X-Cart"), first.ID, tc.n/2)
					}
				}
			})
		})
	}
}

// Behind several proxies, with a Budget.Client that reads the address they
// forward, a page's requests that reach the application through two of them
// are one client's: each is served the guest. A copy of the first-visit
// cookie from another client, within the grace, gets a guest of its own.
// The session records the client's address, not a proxy's.
func TestSiblingsThroughTwoProxies(t *testing.T) {
	f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Client: func(r *http.Request) netip.Addr {
		return anonymous.ClientAddr(r.Header.Get("X-Real-IP")) // set by the proxies
	}}})
	via := func(method, target, proxy, client string, c *http.Cookie) (*httptest.ResponseRecorder, seen) {
		return f.send(t, method, target, withRemote(proxy), withHeader("X-Real-IP", client), withCookie(c))
	}
	const visitor = "203.0.113.7"
	w, first := via("GET", "/page", "10.0.0.1:5000", visitor, nil)
	long := guestCookie(t, w)
	a, _ := via("POST", "/page?item=tea", "10.0.0.1:5001", visitor, long)
	b, _ := via("GET", "/page", "10.0.0.2:5002", visitor, long)
	sawOneGuest(t, []*httptest.ResponseRecorder{a, b}, first.ID, first.Token)
	if b.Header().Get("X-Cart") != "1" {
		t.Errorf("the request through the second proxy saw a cart of %s, want 1", b.Header().Get("X-Cart"))
	}
	if _, other := via("GET", "/page", "10.0.0.2:5003", "198.51.100.9", long); other.ID == "" || other.ID == first.ID {
		t.Errorf("a copy of the cookie from another client was served guest %q, want one of its own (first %q)", other.ID, first.ID)
	}
	if rec, err := f.m.Record(t.Context(), first.ID); err != nil || rec.Session.IPAddress != visitor {
		t.Errorf("the session records the address %q (%v), want the client's %s", rec.Session.IPAddress, err, visitor)
	}
}

// The stored token is keyed: one first-visit cookie, brought back to two
// applications whose first Keys differ (the second knows the first's key,
// to read the cookie), is stored under two tokens. An unkeyed derivation
// would give one, and let anyone holding the cookie compute the stored one.
func TestStoredTokenIsKeyed(t *testing.T) {
	app := func(keys ...[]byte) *fixture {
		o := anonymous.Options{}
		for _, k := range keys {
			o.Keys = append(o.Keys, anonymous.Key{Hash: k})
		}
		return newFixture(t, o)
	}
	a, b := app(hashKey1), app(hashKey2, hashKey1)
	w, first := a.send(t, "GET", "/page")
	long := guestCookie(t, w)
	w, _ = a.send(t, "GET", "/page", withCookie(long))
	ta, _ := sawOneGuest(t, []*httptest.ResponseRecorder{w}, first.ID, first.Token)
	w, _ = b.send(t, "GET", "/page", withCookie(long))
	tb, _ := sawOneGuest(t, []*httptest.ResponseRecorder{w}, first.ID, first.Token)
	if ta == tb {
		t.Errorf("one first-visit cookie is stored under %q whatever the key", ta)
	}
}
