package anonymous_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

const (
	victimIP   = "192.0.2.1:1111"
	attackerIP = "198.51.100.7:2222"
)

// A copy of a first-visit cookie, replayed by a client whose own budget is
// spent (an attacker can spend his own) after the grace of the page's
// siblings, is never served as the guest the victim's browser stored from
// it, and cannot delete it.
func TestStaleFirstVisitCookieOverBudgetIsNoGuest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 1)}})
		// The attacker gets a first-visit cookie F (free: nothing stored).
		w, _ := f.send(t, "GET", "/", withRemote(attackerIP))
		F := guestCookie(t, w)
		// F is planted in the victim's browser, which stores the guest under a
		// new token T2 and puts a cart in it.
		w, victim := f.send(t, "GET", "/", withRemote(victimIP), withCookie(F))
		T2 := guestCookie(t, w)
		if T2 == nil || victim.ID == "" {
			t.Fatal("victim's guest not stored")
		}
		f.send(t, "POST", "/add", withRemote(victimIP), withCookie(T2))
		// The attacker spends his own budget (one sign-in).
		w, _ = f.send(t, "POST", "/api/auth/sign-in/anonymous", withRemote(attackerIP))
		if w.Code != 200 {
			t.Fatalf("sign-in %d", w.Code)
		}
		// Past the grace of its siblings, F, stale, is not the victim's guest.
		time.Sleep(10 * time.Second)
		_, s := f.send(t, "GET", "/", withRemote(attackerIP), withCookie(F))
		if s.ID == victim.ID {
			t.Errorf("stale first-visit cookie served as the victim's guest %s (single-use broken)", s.ID)
		}
		// And it deletes the victim's guest.
		w, _ = f.send(t, "POST", "/api/auth/delete-anonymous-user", withRemote(attackerIP), withCookie(F))
		t.Logf("delete with stale F: %d %s", w.Code, w.Body)
		w, s = f.send(t, "GET", "/", withRemote(victimIP), withCookie(T2))
		if s.ID != victim.ID || w.Header().Get("X-Data") != "x" {
			t.Errorf("victim's guest gone after the attacker's delete: now %q data %q", s.ID, w.Header().Get("X-Data"))
		}
	})
}

// A logged-in client whose budget is spent cannot store guests by linking
// fresh first-visit guests, nor make OnLinkAccount run for them.
func TestLinkBypassesBudget(t *testing.T) {
	var calls atomic.Int64
	f := newFixture(t, anonymous.Options{
		Budget:        anonymous.Budget{Levels: perClient(1, time.Hour, 1)},
		Identify:      identifyHeader,
		OnLinkAccount: func(context.Context, anonymous.LinkEvent) error { calls.Add(1); return nil },
	})
	// Spend the budget.
	w, _ := f.send(t, "GET", "/", withRemote(attackerIP))
	f.send(t, "GET", "/", withRemote(attackerIP), withCookie(guestCookie(t, w)))
	before := f.stored()
	const n = 200
	for range n {
		w, _ := f.send(t, "GET", "/", withRemote(attackerIP))                                             // a free first-visit cookie
		f.send(t, "GET", "/", withRemote(attackerIP), withUser("mallory"), withCookie(guestCookie(t, w))) // linked: stored first
	}
	if got := f.stored() - before; got > 1 {
		t.Errorf("budget of 1 spent, yet %d records stored by links (OnLinkAccount ran %d times)", got, calls.Load())
	}
}

// A first-visit guest whose OnLinkAccount fails once is linked on the next
// request.
func TestFailedLinkOfFirstVisitGuestIsRetried(t *testing.T) {
	c := newCarts()
	c.fail.Store(1)
	f := newFixture(t, anonymous.Options{
		Budget:        anonymous.Budget{Levels: perClient(1, time.Hour, 2)},
		Identify:      identifyHeader,
		OnLinkAccount: c.onLink,
	})
	w, _ := f.send(t, "GET", "/", withRemote(victimIP)) // spends nothing
	w2, _ := f.send(t, "GET", "/", withRemote(victimIP), withCookie(guestCookie(t, w)))
	_ = w2 // one guest of the budget's two is spent; the link stores the second
	w, g := f.send(t, "GET", "/", withRemote(victimIP))
	F := guestCookie(t, w)
	c.put(g.ID, 3)                                                                       // the app's cart, kept by the app under the guest's id
	w, _ = f.send(t, "GET", "/", withRemote(victimIP), withUser("alice"), withCookie(F)) // callback fails
	if c := guestCookie(t, w); c != nil {
		F = c // the browser keeps what it is sent
	}
	f.send(t, "GET", "/", withRemote(victimIP), withUser("alice"), withCookie(F)) // should retry
	if c.calls.Load() != 2 || c.get("alice") != 3 {
		t.Errorf("OnLinkAccount ran %d times, alice's cart %d: the failed link was never retried", c.calls.Load(), c.get("alice"))
	}
}

// switchLimiter refuses while refuse is set.
type switchLimiter struct{ refuse atomic.Bool }

func (l *switchLimiter) Take(context.Context, []anonymous.Charge) (time.Duration, error) {
	if l.refuse.Load() {
		return time.Minute, nil
	}
	return 0, nil
}

func (l *switchLimiter) Refund(context.Context, []anonymous.Charge) error { return nil }

// A guest the budget kept out at the start of a request keeps its updates
// in its cookie for the rest of the request, even if the budget frees
// meanwhile (asking again would cost each update two round trips); its
// next request stores it, data and all, for its whole Lifetime.
func TestUpdateDataFromFirstVisitCookie(t *testing.T) {
	lim := &switchLimiter{}
	f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Limiter: lim}})
	f.h = func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			lim.refuse.Store(r.Header.Get("X-Refuse") != "")
			inner.ServeHTTP(w, r)
		})
	}(f.h)
	w, _ := f.send(t, "GET", "/", withRemote(victimIP))
	F := guestCookie(t, w)
	// The lookup is refused, then the budget frees before UpdateData (here:
	// the limiter allows from the handler on).
	r := httptest.NewRequest("POST", "https://shop.example/add?n=1&n=2", nil)
	r.AddCookie(F)
	r.Header.Set("X-Refuse", "1")
	mw := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lim.refuse.Store(false)
		for range 2 {
			if _, err := f.m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, 'x'), nil }); err != nil {
				w.Header().Add("X-Err", err.Error())
			}
		}
	}))
	rec := httptest.NewRecorder()
	lim.refuse.Store(true)
	mw.ServeHTTP(rec, r)
	if errs := rec.Header()["X-Err"]; len(errs) > 0 {
		t.Errorf("second UpdateData of one request: %q", errs)
	}
	c := guestCookie(t, rec)
	if c == nil || c.MaxAge != 3600 || f.stored() != 0 {
		t.Fatalf("the cookie %+v, %d stored: want the guest held in its first-visit cookie", c, f.stored())
	}
	w, _ = f.send(t, "GET", "/", withRemote(victimIP), withCookie(c))
	if c = guestCookie(t, w); c == nil || c.MaxAge < 24*3600 || w.Header().Get("X-Data") != "xx" || f.stored() != 1 {
		t.Errorf("the next request: cookie %+v, data %q, %d stored; want the guest stored for its Lifetime, with its two updates",
			c, w.Header().Get("X-Data"), f.stored())
	}
}

// Several UpdateData calls in the request that issued the guest all work,
// whatever the budget has left after the first stored it.
func TestSeveralUpdatesOnAnIssuedGuest(t *testing.T) {
	f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 1)}})
	w, _ := f.send(t, "GET", "/add?n=1&n=2", withRemote(victimIP))
	if errs := w.Header()["X-Err"]; len(errs) > 0 {
		t.Errorf("two UpdateData calls on a first request: %q", errs)
	}
}

// Cookies tossed in under the guest cookie's name (possible when the name is
// not __Host-) do not hide the real one, and never get a new guest issued
// over it.
func TestTossedCookiesDoNotHideTheRealOne(t *testing.T) {
	f := newFixture(t, anonymous.Options{CookieName: "anonymous_guest", Budget: anonymous.Budget{Off: true}})
	w, _ := f.send(t, "GET", "/", withRemote(victimIP))
	w, g := f.send(t, "GET", "/", withRemote(victimIP), withCookie(guestCookie(t, w)))
	real := guestCookie(t, w)
	var cs []*http.Cookie
	for range 4 {
		cs = append(cs, &http.Cookie{Name: "anonymous_guest", Value: "tossed"})
	}
	w, s := f.send(t, "GET", "/", withRemote(victimIP), withCookie(append(cs, real)...))
	if s.ID != g.ID || guestCookie(t, w) != nil {
		t.Errorf("4 tossed cookies: guest %s became %s and a new cookie was set: %q", g.ID, s.ID, w.Header()["Set-Cookie"])
	}
	// More than the middleware checks: no guest for that request, and above
	// all no new cookie over the real one.
	for range 20 {
		cs = append(cs, &http.Cookie{Name: "anonymous_guest", Value: "tossed"})
	}
	if w, s := f.send(t, "GET", "/", withRemote(victimIP), withCookie(append(cs, real)...)); s.ID != "" || len(w.Header()["Set-Cookie"]) != 0 {
		t.Errorf("24 tossed cookies: guest %q, Set-Cookie %q; want neither", s.ID, w.Header()["Set-Cookie"])
	}
	// Values net/http drops as malformed (a JSON cookie of a sibling app,
	// say) do not count, however many come first.
	var header strings.Builder
	for _, bad := range []string{`{"a":1}`, `a\b`, "a\x01b", "é", `"x"y"`} {
		for range 5 {
			header.WriteString("anonymous_guest=" + bad + "; ")
		}
	}
	w, s = f.send(t, "GET", "/", withRemote(victimIP), withHeader("Cookie", header.String()+real.Name+"="+real.Value))
	if s.ID != g.ID || guestCookie(t, w) != nil {
		t.Errorf("25 malformed cookies first: guest %q, Set-Cookie %q; want %s and no cookie", s.ID, w.Header()["Set-Cookie"], g.ID)
	}
}

// A link whose callback outlives its lease does not bury data an update wrote
// after the lease ran out: the link is left to be retried.
func TestLinkPastLeaseKeepsNewData(t *testing.T) {
	var got []byte
	release := make(chan struct{})
	f := newFixture(t, anonymous.Options{
		Budget:    anonymous.Budget{Off: true},
		Identify:  identifyHeader,
		LinkLease: 200 * time.Millisecond,
		OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error {
			got = ev.Data
			<-release // a slow merge that does not watch its context
			return nil
		},
	})
	w, _ := f.send(t, "GET", "/", withRemote(victimIP))
	w, g := f.send(t, "GET", "/", withRemote(victimIP), withCookie(guestCookie(t, w)))
	T := guestCookie(t, w)
	f.send(t, "POST", "/add", withRemote(victimIP), withCookie(T)) // data "x"
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.send(t, "GET", "/", withRemote(victimIP), withUser("alice"), withCookie(T))
	}()
	time.Sleep(300 * time.Millisecond) // past the lease
	w, _ = f.send(t, "POST", "/add", withRemote(victimIP), withCookie(T))
	added := len(w.Header()["X-Err"]) == 0
	close(release)
	<-done
	rec, err := storedRecord(f.store, g.ID)
	if added && err == nil && !rec.Deleted {
		return
	}
	if added {
		t.Errorf("UpdateData succeeded during the link (data now \"xx\"), the callback got %q, and the guest was buried: one item lost without an error", got)
	}
}

// "The store is full" is logged once a minute while it lasts.
func TestStoreFullLoggedOnceAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMemstore(t, memstore.Options{MaxBytes: guestBytes})
		f := newFixtureOn(t, ms, anonymous.Options{PersistOnIssue: true, Budget: anonymous.Budget{Off: true}})
		for range 60 { // a request every 10 s for 10 minutes, the store full throughout
			f.send(t, "GET", "/")
			time.Sleep(10 * time.Second)
		}
		if n := strings.Count(f.logs.String(), "the store is full"); n < 5 {
			t.Errorf("store full for 10 minutes, logged %d times", n)
		}
	})
}

// A first-visit guest over the budget links at once, with the cart its
// cookie holds: the login stores it, uncharged to the client's budget; a
// failed callback keeps it, stored now, and the next request retries.
func TestOverBudgetGuestLinks(t *testing.T) {
	var links []anonymous.LinkEvent
	fail := true
	f := newFixture(t, anonymous.Options{
		Budget:   anonymous.Budget{Levels: perClient(1, time.Hour, 1)},
		Identify: identifyHeader,
		OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error {
			if fail {
				fail = false
				return errors.New("cart service unavailable")
			}
			links = append(links, ev)
			return nil
		},
	})
	w, _ := f.send(t, "GET", "/", withRemote(victimIP))
	f.send(t, "GET", "/", withRemote(victimIP), withCookie(guestCookie(t, w))) // the budget is spent
	w, g := f.send(t, "GET", "/", withRemote(victimIP))
	F := guestCookie(t, w)
	w, _ = f.send(t, "POST", "/add", withRemote(victimIP), withCookie(F)) // kept in the cookie
	if e := w.Header().Get("X-Err"); e != "" {
		t.Fatalf("an update over the budget: %s", e)
	}
	F = guestCookie(t, w)
	w, _ = f.send(t, "GET", "/", withRemote(victimIP), withUser("alice"), withCookie(F)) // the callback fails
	if c := guestCookie(t, w); c != nil && c.MaxAge > 0 {
		F = c // stored now, its cookie re-set
	}
	if _, s := f.send(t, "GET", "/", withRemote(victimIP), withCookie(F)); s.ID != g.ID {
		t.Fatalf("after a failed link the cookie opens %q, want the guest %q", s.ID, g.ID)
	}
	f.send(t, "GET", "/", withRemote(victimIP), withUser("alice"), withCookie(F)) // retried
	if len(links) != 1 || links[0].AnonymousUser.User.ID != g.ID || string(links[0].Data) != "x" {
		t.Errorf("OnLinkAccount got %+v, want one link of %s with its data", links, g.ID)
	}
}

// A planted first-visit cookie cannot be timed into the siblings' grace:
// an attacker who keeps his own budget spent, so that his polls with the
// cookie store nothing, and polls while the victim's browser stores the
// guest, is not a sibling of hers: he comes from another address.
func TestPlantedCookiePollerIsNoSibling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 1)}})
		w, _ := f.send(t, "GET", "/", withRemote(attackerIP))
		F := guestCookie(t, w)
		if w, _ := f.send(t, "POST", "/api/auth/sign-in/anonymous", withRemote(attackerIP)); w.Code != 200 {
			t.Fatalf("sign-in %d", w.Code)
		}
		for range 5 { // the polls store nothing: his budget is spent
			f.send(t, "GET", "/", withRemote(attackerIP), withCookie(F))
			time.Sleep(time.Second)
		}
		w, victim := f.send(t, "GET", "/", withRemote(victimIP), withCookie(F))
		f.send(t, "POST", "/add", withRemote(victimIP), withCookie(guestCookie(t, w)))
		time.Sleep(500 * time.Millisecond)
		w, got := f.send(t, "GET", "/", withRemote(attackerIP), withCookie(F))
		if got.ID == victim.ID || w.Header().Get("X-Data") != "" {
			t.Errorf("the attacker's poll was served the victim's guest %s with data %q", got.ID, w.Header().Get("X-Data"))
		}
		// A sibling from the victim's own address is still one.
		if _, s := f.send(t, "GET", "/", withRemote(victimIP), withCookie(F)); s.ID != victim.ID {
			t.Errorf("the victim's sibling saw %q, want %q", s.ID, victim.ID)
		}
	})
}

// A sibling that comes after the store finds the guest without spending the
// client's budget: one browser's page does not use up its address's.
func TestSiblingsAfterTheStoreAreNotCharged(t *testing.T) {
	f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 2)}})
	w, _ := f.send(t, "GET", "/", withRemote(victimIP))
	F := guestCookie(t, w)
	for range 4 { // the store, then three siblings
		f.send(t, "GET", "/", withRemote(victimIP), withCookie(F))
	}
	w, _ = f.send(t, "GET", "/", withRemote(victimIP)) // a second browser of the address
	w, _ = f.send(t, "GET", "/", withRemote(victimIP), withCookie(guestCookie(t, w)))
	if c := guestCookie(t, w); c == nil || c.MaxAge == 3600 {
		t.Errorf("the second browser's guest was not stored (cookie %v): the first one's siblings were charged", c)
	}
}

// Goroutines of one request may update a first visit's guest at once: it
// is stored once, its cookie set once, and every update counts.
func TestConcurrentUpdatesOfOneRequest(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	var id string
	f.h = f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id = anonymous.UserFrom(r.Context()).ID
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if _, err := f.m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, 'x'), nil }); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}))
	w, _ := f.send(t, "GET", "/")
	if n := len(w.Header()["Set-Cookie"]); n != 1 {
		t.Fatalf("%d Set-Cookie lines: %q", n, w.Header()["Set-Cookie"])
	}
	if rec, err := storedRecord(f.store.Store, id); err != nil || string(rec.Data) != "xxxx" {
		t.Errorf("stored %+v, %v; want the data of 4 updates", rec, err)
	}
}

// A guest that UpdateData stored during a request is the one Link links,
// however long the request took.
func TestLinkAfterUpdateDataInALongRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := &switchLimiter{}
		var links []anonymous.LinkEvent
		f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Limiter: lim},
			OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error { links = append(links, ev); return nil }})
		f.h = f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/login" {
				return
			}
			lim.refuse.Store(false)
			if _, err := f.m.UpdateData(w, r, func([]byte) ([]byte, error) { return []byte("cart"), nil }); err != nil {
				t.Fatal(err)
			}
			time.Sleep(11 * time.Second) // a slow password hash
			if err := f.m.Link(w, r, &anonymous.User{ID: "alice"}); err != nil {
				t.Error(err)
			}
		}))
		w, _ := f.send(t, "GET", "/")
		F := guestCookie(t, w)
		lim.refuse.Store(true) // the first return is refused: the guest stays in its cookie
		f.send(t, "POST", "/login", withCookie(F))
		if len(links) != 1 || string(links[0].Data) != "cart" {
			t.Errorf("OnLinkAccount got %+v, want one link with the data", links)
		}
	})
}
