package anonymous_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// carts is an application's data keyed by user id, moved by OnLinkAccount.
type carts struct {
	mu    sync.Mutex
	items map[string]int
	calls atomic.Int64
	links []anonymous.LinkEvent
	fail  atomic.Int64 // fail this many calls first
}

func newCarts() *carts { return &carts{items: map[string]int{}} }

func (c *carts) onLink(ctx context.Context, l anonymous.LinkEvent) error {
	c.calls.Add(1)
	if c.fail.Add(-1) >= 0 {
		return errors.New("cart service unavailable")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.links = append(c.links, l)
	c.items[l.NewUser.User.ID] += c.items[l.AnonymousUser.User.ID]
	delete(c.items, l.AnonymousUser.User.ID)
	return nil
}

func (c *carts) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items[id]
}

// linked returns the links OnLinkAccount heard so far.
func (c *carts) linked() []anonymous.LinkEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.links)
}

func (c *carts) put(id string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items[id] = n
}

// identifyHeader plays the application's auth: X-User names the real user.
func identifyHeader(r *http.Request) (*anonymous.User, error) {
	if id := r.Header.Get("X-User"); id != "" {
		return &anonymous.User{ID: id, Name: id, Email: id + "@example.com"}, nil
	}
	return nil, nil
}

func linkFixture(t *testing.T, opts anonymous.Options) (*fixture, *carts) {
	t.Helper()
	c := newCarts()
	opts.OnLinkAccount = c.onLink
	if opts.Identify == nil {
		opts.Identify = identifyHeader
	}
	return newFixture(t, opts), c
}

// storedGuest makes a stored guest and returns its cookie and identity.
func storedGuest(t *testing.T, f *fixture) (*http.Cookie, seen) {
	t.Helper()
	w, _ := f.send(t, "GET", "/")
	w, g := f.send(t, "GET", "/", withCookie(guestCookie(t, w)))
	c := guestCookie(t, w)
	if c == nil {
		t.Fatal("guest was not stored on return")
	}
	return c, g
}

func cookieExpired(t *testing.T, w *httptest.ResponseRecorder) bool {
	t.Helper()
	c := guestCookie(t, w)
	return c != nil && c.MaxAge < 0
}

func TestIdentifyLinksGuest(t *testing.T) {
	f, c := linkFixture(t, anonymous.Options{})
	cookie, g := storedGuest(t, f)
	c.put(g.ID, 3)

	w, s := f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
	if s.ID != "alice" || s.IsAnonymous || s.Token != "" {
		t.Errorf("handler saw %+v, want the real user alice", s)
	}
	if c.calls.Load() != 1 || c.links[0].AnonymousUser.User.ID != g.ID || c.links[0].NewUser.User.ID != "alice" {
		t.Fatalf("callback: %d calls, links %+v", c.calls.Load(), c.links)
	}
	if c.links[0].AnonymousUser.Session == nil || c.links[0].AnonymousUser.Session.UserID != g.ID {
		t.Error("callback did not get the guest's session")
	}
	if c.get("alice") != 3 || c.get(g.ID) != 0 {
		t.Errorf("cart not moved: alice %d, guest %d", c.get("alice"), c.get(g.ID))
	}
	if !cookieExpired(t, w) {
		t.Errorf("guest cookie not expired: %v", w.Header()["Set-Cookie"])
	}
	if !buried(f.store.Store, g.ID) {
		t.Errorf("guest still in store")
	}

	// Replaying the old cookie: no second link, and no guest back.
	_, s = f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
	if c.calls.Load() != 1 || s.ID != "alice" {
		t.Errorf("replay while logged in: %d calls, saw %+v", c.calls.Load(), s)
	}
	_, s = f.send(t, "GET", "/", withCookie(cookie))
	if s.ID == g.ID || !s.IsAnonymous {
		t.Errorf("replay after logout saw %+v, want a fresh guest", s)
	}
}

func TestLinkFromHandler(t *testing.T) {
	c := newCarts()
	f := newFixture(t, anonymous.Options{OnLinkAccount: c.onLink})
	var linkErr error
	login := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		linkErr = f.m.Link(w, r, &anonymous.User{ID: "bob", Email: "bob@example.com"})
	}))
	cookie, g := storedGuest(t, f)
	c.put(g.ID, 2)
	c.put("bob", 5)

	r := httptest.NewRequest("POST", "https://shop.example/login", nil)
	r.AddCookie(cookie)
	w := httptest.NewRecorder()
	login.ServeHTTP(w, r)
	if linkErr != nil {
		t.Fatal(linkErr)
	}
	if c.calls.Load() != 1 || c.get("bob") != 7 {
		t.Errorf("%d calls, bob has %d items, want 1 and 7", c.calls.Load(), c.get("bob"))
	}
	if !cookieExpired(t, w) {
		t.Error("cookie not expired")
	}
	if !buried(f.store.Store, g.ID) {
		t.Errorf("guest still stored")
	}

	// Link works on a bare handler too, reading the cookie itself.
	cookie, g = storedGuest(t, f)
	r = httptest.NewRequest("POST", "https://shop.example/login", nil)
	r.AddCookie(cookie)
	w = httptest.NewRecorder()
	if err := f.m.Link(w, r, &anonymous.User{ID: "carol"}); err != nil {
		t.Fatal(err)
	}
	if c.calls.Load() != 2 || !cookieExpired(t, w) {
		t.Errorf("bare Link: %d calls, cookie %v", c.calls.Load(), w.Header()["Set-Cookie"])
	}
}

func TestLinkWithoutGuestIsNoop(t *testing.T) {
	c := newCarts()
	f := newFixture(t, anonymous.Options{OnLinkAccount: c.onLink})
	w := httptest.NewRecorder()
	if err := f.m.Link(w, httptest.NewRequest("POST", "/login", nil), &anonymous.User{ID: "bob"}); err != nil {
		t.Errorf("Link without a guest: %v", err)
	}
	if c.calls.Load() != 0 || len(w.Header()["Set-Cookie"]) != 0 {
		t.Error("Link without a guest did something")
	}
}

func TestRealUserWithoutGuestGetsNone(t *testing.T) {
	f, c := linkFixture(t, anonymous.Options{PersistOnIssue: true})
	w, s := f.send(t, "GET", "/", withUser("alice"))
	if s.ID != "alice" || s.IsAnonymous {
		t.Errorf("saw %+v", s)
	}
	if len(w.Header()["Set-Cookie"]) != 0 || f.store.creates.Load() != 0 || c.calls.Load() != 0 {
		t.Error("a real user was issued a guest")
	}
}

func TestDisableDeleteKeepsLinkedRecord(t *testing.T) {
	f, c := linkFixture(t, anonymous.Options{DisableDeleteAnonymousUser: true})
	cookie, g := storedGuest(t, f)
	w, _ := f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
	if !cookieExpired(t, w) || c.calls.Load() != 1 {
		t.Fatalf("link did not happen: %d calls", c.calls.Load())
	}
	rec, err := storedRecord(f.store.Store, g.ID)
	if err != nil {
		t.Fatalf("guest record not kept: %v", err)
	}
	if rec.LinkedTo != "alice" || rec.TokenHash != [32]byte{} || rec.User.Email != g.Email {
		t.Errorf("kept record %+v, want linked to alice with no session", rec)
	}
	if f.store.deletes.Load() != 0 {
		t.Error("record deleted")
	}
	// Never linked again, and its cookie no longer works.
	if _, s := f.send(t, "GET", "/", withCookie(cookie), withUser("bob")); s.ID != "bob" || c.calls.Load() != 1 {
		t.Errorf("second link: saw %q, %d calls", s.ID, c.calls.Load())
	}
	if _, s := f.send(t, "GET", "/", withCookie(cookie)); s.ID == g.ID {
		t.Error("revoked guest's cookie still works")
	}
}

func TestFailingCallbackKeepsGuestAndRetries(t *testing.T) {
	f, c := linkFixture(t, anonymous.Options{})
	c.fail.Store(1)
	cookie, g := storedGuest(t, f)
	c.put(g.ID, 4)

	w, s := f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
	if s.ID != "alice" {
		t.Errorf("request after a failed link saw %q, want alice", s.ID)
	}
	if len(w.Header()["Set-Cookie"]) != 0 {
		t.Errorf("cookie touched after a failed link: %v", w.Header()["Set-Cookie"])
	}
	if _, err := storedRecord(f.store.Store, g.ID); err != nil {
		t.Fatalf("guest lost after a failed link: %v", err)
	}
	if c.get(g.ID) != 4 || c.get("alice") != 0 {
		t.Fatal("data moved by a failed link")
	}
	if logs := f.logs.String(); !strings.Contains(logs, "cart service unavailable") {
		t.Errorf("callback error not logged: %q", logs)
	}
	// The guest is still a guest without the login.
	if _, s := f.send(t, "GET", "/", withCookie(cookie)); s.ID != g.ID {
		t.Errorf("guest after failed link: %q", s.ID)
	}

	w, _ = f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
	if c.calls.Load() != 2 || c.get("alice") != 4 || c.get(g.ID) != 0 || f.store.deletes.Load() != 1 || !cookieExpired(t, w) {
		t.Errorf("retry: %d calls, alice %d, guest %d, %d deletes", c.calls.Load(), c.get("alice"), c.get(g.ID), f.store.deletes.Load())
	}
	f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
	if c.calls.Load() != 2 || f.store.deletes.Load() != 1 {
		t.Error("linked twice")
	}

	// Link returns the callback's error to the login handler.
	c.fail.Store(1)
	cookie, _ = storedGuest(t, f)
	r := httptest.NewRequest("POST", "/login", nil)
	r.AddCookie(cookie)
	if err := f.m.Link(httptest.NewRecorder(), r, &anonymous.User{ID: "bob"}); err == nil || !strings.Contains(err.Error(), "cart service unavailable") {
		t.Errorf("Link error %v", err)
	}
}

func TestConcurrentLinksRunCallbackOnce(t *testing.T) {
	for round := range 20 {
		f, c := linkFixture(t, anonymous.Options{})
		cookie, g := storedGuest(t, f)
		c.put(g.ID, 1)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 64 {
			wg.Go(func() {
				<-start
				if w, _ := f.send(t, "GET", "/", withCookie(cookie), withUser("alice")); w.Code != http.StatusOK {
					t.Errorf("status %d", w.Code)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := c.calls.Load(); n != 1 {
			t.Fatalf("round %d: callback ran %d times", round, n)
		}
		if c.get("alice") != 1 || f.store.deletes.Load() != 1 {
			t.Fatalf("round %d: alice has %d, %d deletes", round, c.get("alice"), f.store.deletes.Load())
		}
	}
}

func TestCrashedClaimIsTakenOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c := linkFixture(t, anonymous.Options{})
		cookie, g := storedGuest(t, f)
		// A process claimed the guest and died without releasing it.
		rec, err := storedRecord(f.store.Store, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		rec.ClaimOwner, rec.ClaimUntil = "crashed", time.Now().Add(150*time.Millisecond)
		if err := rewrite(f.store.Store, rec); err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/login", nil)
		r.AddCookie(cookie)
		if err := f.m.Link(httptest.NewRecorder(), r, &anonymous.User{ID: "alice"}); !errors.Is(err, anonymous.ErrClaimed) {
			t.Fatalf("Link during a live claim: %v, want ErrClaimed", err)
		}
		if c.calls.Load() != 0 {
			t.Fatal("callback ran during another's claim")
		}
		time.Sleep(200 * time.Millisecond) // let the lease run out
		w, _ := f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
		if c.calls.Load() != 1 || !cookieExpired(t, w) {
			t.Errorf("lease not taken over: %d calls", c.calls.Load())
		}
	})
}

func TestLinkGuards(t *testing.T) {
	f, c := linkFixture(t, anonymous.Options{Identify: func(r *http.Request) (*anonymous.User, error) {
		if r.Header.Get("X-User") != "" {
			return &anonymous.User{ID: "other-guest", IsAnonymous: true}, nil
		}
		return nil, nil
	}})
	cookie, g := storedGuest(t, f)
	// An anonymous "real" user is no real user: the guest stays a guest.
	if _, s := f.send(t, "GET", "/", withCookie(cookie), withUser("x")); s.ID != g.ID {
		t.Errorf("saw %q, want the guest", s.ID)
	}
	r := httptest.NewRequest("POST", "/login", nil)
	r.AddCookie(cookie)
	for _, u := range []anonymous.User{{ID: g.ID}, {ID: "someone", IsAnonymous: true}} {
		w := httptest.NewRecorder()
		if err := f.m.Link(w, r, &u); err != nil || len(w.Header()["Set-Cookie"]) != 0 {
			t.Errorf("Link(%+v): %v, %v", u, err, w.Header()["Set-Cookie"])
		}
	}
	if c.calls.Load() != 0 || f.store.deletes.Load() != 0 {
		t.Error("a guarded link ran or deleted")
	}
	if _, err := storedRecord(f.store.Store, g.ID); err != nil {
		t.Errorf("guest gone: %v", err)
	}
}

func TestPendingGuestLinks(t *testing.T) {
	f, c := linkFixture(t, anonymous.Options{})
	w, g := f.send(t, "GET", "/")
	pending := guestCookie(t, w) // never sent back: the guest is not stored
	w, s := f.send(t, "GET", "/", withCookie(pending), withUser("alice"))
	if s.ID != "alice" || c.calls.Load() != 1 || c.links[0].AnonymousUser.User.ID != g.ID || !cookieExpired(t, w) {
		t.Fatalf("pending guest not linked: %d calls, saw %+v", c.calls.Load(), s)
	}
	// The pending cookie cannot bring the guest back.
	if _, s := f.send(t, "GET", "/", withCookie(pending)); s.ID == g.ID {
		t.Error("a replayed pending cookie resurrected a linked guest")
	}
	if !buried(f.store.Store, g.ID) {
		t.Errorf("linked guest in store")
	}
}

// A callback that overruns LinkLease sees its context end, so the request
// that takes the guest over is the only one whose link completes.
func TestLeaseOverrunCancelsCallback(t *testing.T) {
	var calls, completed atomic.Int64
	var firstErr atomic.Value
	started := make(chan struct{})
	f := newFixture(t, anonymous.Options{
		Identify:  identifyHeader,
		LinkLease: 100 * time.Millisecond,
		OnLinkAccount: func(ctx context.Context, l anonymous.LinkEvent) error {
			if calls.Add(1) == 1 {
				close(started)
				<-ctx.Done() // a slow callback that honours its context
				firstErr.Store(ctx.Err())
				return ctx.Err()
			}
			completed.Add(1)
			return nil
		},
	})
	cookie, g := storedGuest(t, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
	}()
	<-started
	<-done
	if err, _ := firstErr.Load().(error); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("overrunning callback's context ended with %v", err)
	}
	if _, err := storedRecord(f.store.Store, g.ID); err != nil {
		t.Fatalf("guest lost after an overrun: %v", err)
	}
	f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
	if calls.Load() != 2 || completed.Load() != 1 {
		t.Errorf("%d calls, %d completed; want 2 and 1", calls.Load(), completed.Load())
	}
	if !buried(f.store.Store, g.ID) {
		t.Errorf("guest not deleted by the completed link")
	}
}

// failBuryOnce fails the first write that buries a guest, after the
// callback has succeeded; applied says whether that write still happened
// (its answer lost).
type failBuryOnce struct {
	anonymous.Store
	applied bool
	failed  atomic.Bool
}

func (s *failBuryOnce) Update(ctx context.Context, key string, e anonymous.Entry) error {
	rec, err := anonymous.DecodeRecord(key, e)
	if err == nil && (rec.Deleted || rec.LinkedTo != "") && s.failed.CompareAndSwap(false, true) {
		if s.applied {
			s.Store.Update(ctx, key, e)
		}
		return errDown
	}
	return s.Store.Update(ctx, key, e)
}

// When recording the link fails once after a successful callback (the
// write lost, or only its answer), the link retries it: the guest is gone,
// the callback ran once, and later requests do not run it again.
func TestBuryFailureAfterCallbackDoesNotRelink(t *testing.T) {
	for _, applied := range []bool{false, true} {
		t.Run(fmt.Sprint("applied=", applied), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testBuryFailure(t, applied) })
		})
	}
}

func testBuryFailure(t *testing.T, applied bool) {
	f, c := linkFixture(t, anonymous.Options{LinkLease: 50 * time.Millisecond})
	cookie, g := storedGuest(t, f)
	f.store.Store = &failBuryOnce{Store: f.store.Store, applied: applied}
	c.put(g.ID, 2)
	for range 2 {
		f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
		time.Sleep(80 * time.Millisecond) // past the lease
	}
	if n := c.calls.Load(); n != 1 || c.get("alice") != 2 {
		t.Fatalf("OnLinkAccount ran %d times, alice has %d", n, c.get("alice"))
	}
	if id, err := f.m.LinkedTo(context.Background(), g.ID); id != "alice" || err != nil {
		t.Errorf("LinkedTo = %q, %v; want alice", id, err)
	}
}

// retriedClaim applies the first claim written and answers it with
// ErrConflict: what a store client that resends a write whose answer it
// lost (go-redis does, on a timeout) reports when the first send was
// applied.
type retriedClaim struct {
	anonymous.Store
	done atomic.Bool
}

func (s *retriedClaim) Update(ctx context.Context, key string, e anonymous.Entry) error {
	rec, err := anonymous.DecodeRecord(key, e)
	if err == nil && rec.ClaimOwner != "" && !rec.Deleted && s.done.CompareAndSwap(false, true) {
		if err := s.Store.Update(ctx, key, e); err != nil {
			return err
		}
		return anonymous.ErrConflict
	}
	return s.Store.Update(ctx, key, e)
}

// A claim applied but answered as a conflict is the link's own: the link
// goes on, rather than waiting out its own lease as another request's.
func TestOwnClaimAnsweredAsConflict(t *testing.T) {
	f, c := linkFixture(t, anonymous.Options{})
	cookie, g := storedGuest(t, f)
	f.store.Store = &retriedClaim{Store: f.store.Store}
	c.put(g.ID, 3)
	if _, s := f.send(t, "GET", "/", withCookie(cookie), withUser("alice")); s.ID != "alice" {
		t.Fatalf("saw %+v, want alice", s)
	}
	if n := c.calls.Load(); n != 1 || c.get("alice") != 3 {
		t.Fatalf("OnLinkAccount ran %d times, alice has %d; want once, 3", n, c.get("alice"))
	}
	if id, err := f.m.LinkedTo(context.Background(), g.ID); id != "alice" || err != nil {
		t.Errorf("LinkedTo = %q, %v; want alice", id, err)
	}
}

// A logged-in user is served as such while the store is down: Identify
// needs no store, and the link waits.
func TestStoreOutageKeepsRealUser(t *testing.T) {
	for _, mode := range []bool{false, true} {
		f, c := linkFixture(t, anonymous.Options{FailClosed: mode})
		cookie, g := storedGuest(t, f)
		f.store.fail.Store(true)
		w, s := f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
		if s.ID != "alice" || len(w.Header()["Set-Cookie"]) != 0 {
			t.Errorf("FailClosed %v: saw %+v, cookies %v", mode, s, w.Header()["Set-Cookie"])
		}
		f.store.fail.Store(false)
		f.send(t, "GET", "/", withCookie(cookie), withUser("alice"))
		if c.calls.Load() != 1 {
			t.Errorf("FailClosed %v: link after recovery ran %d times", mode, c.calls.Load())
		}
		if !buried(f.store.Store, g.ID) {
			t.Errorf("FailClosed %v: guest not linked after recovery", mode)
		}
	}
}

// Behind a middleware that already met the real user, Link reports that
// link's outcome instead of running the callback a second time.
func TestLinkAfterMiddlewareLinkReportsIt(t *testing.T) {
	f, c := linkFixture(t, anonymous.Options{})
	var linkErr error
	h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		linkErr = f.m.Link(w, r, &anonymous.User{ID: "alice"})
	}))
	cookie, g := storedGuest(t, f)
	c.fail.Store(1)
	r := httptest.NewRequest("POST", "/login", nil)
	r.AddCookie(cookie)
	r.Header.Set("X-User", "alice")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if c.calls.Load() != 1 || linkErr == nil || !strings.Contains(linkErr.Error(), "cart service unavailable") {
		t.Fatalf("%d calls, Link returned %v; want 1 call and the callback's error", c.calls.Load(), linkErr)
	}
	h.ServeHTTP(httptest.NewRecorder(), r)
	if c.calls.Load() != 2 || linkErr != nil {
		t.Errorf("retry: %d calls, Link returned %v", c.calls.Load(), linkErr)
	}
	if !buried(f.store.Store, g.ID) {
		t.Errorf("guest not linked")
	}
}

// Two Managers in one handler chain each find their own guest: the outer
// one's Link links the outer guest, and UserFrom sees the innermost.
func TestTwoManagersInOneChain(t *testing.T) {
	linked := map[string]string{} // manager name -> guest id its callback saw
	mk := func(name string) *anonymous.Manager {
		ms := newMemstore(t, memstore.Options{})
		m, err := anonymous.New(ms, anonymous.Options{
			Keys: []anonymous.Key{{Hash: hashKey1}}, CookieName: name, PersistOnIssue: true,
			BasePath: "/" + name,
			OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error {
				linked[name] = ev.AnonymousUser.User.ID
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	outer, inner := mk("outer"), mk("inner")
	var innerSeen string
	h := outer.Middleware(inner.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		innerSeen = anonymous.UserFrom(r.Context()).ID
		if r.URL.Path == "/login" {
			if err := outer.Link(w, r, &anonymous.User{ID: "alice"}); err != nil {
				t.Errorf("outer Link: %v", err)
			}
		}
	})))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	r := httptest.NewRequest("POST", "/login", nil)
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	firstInner := innerSeen
	h.ServeHTTP(httptest.NewRecorder(), r)
	if innerSeen != firstInner {
		t.Errorf("UserFrom saw %q on return, want the inner guest %q", innerSeen, firstInner)
	}
	if linked["inner"] != "" || linked["outer"] == "" || linked["outer"] == firstInner {
		t.Errorf("callbacks saw %v; want only the outer manager's, with the outer guest (inner guest %s)", linked, firstInner)
	}
}

// A real user with an empty ID, from Identify or given to Link, is an error:
// nothing is linked, no callback runs, and the guest and its cookie stay.
func TestRealUserWithoutIDIsRefused(t *testing.T) {
	var deleted atomic.Int64
	nobody := func(r *http.Request) (*anonymous.User, error) {
		if r.Header.Get("X-User") == "" {
			return nil, nil
		}
		return &anonymous.User{Name: "no id"}, nil
	}
	f, c := linkFixture(t, anonymous.Options{
		Identify:       nobody,
		OnGuestDeleted: func(context.Context, *anonymous.User, anonymous.DeleteReason) { deleted.Add(1) },
	})
	cookie, g := storedGuest(t, f)

	w, s := f.send(t, "GET", "/", withCookie(cookie), withUser("someone"))
	if s.ID != "" || len(w.Header()["Set-Cookie"]) != 0 {
		t.Errorf("Identify naming a user without an ID: the handler saw %+v, Set-Cookie %q; want nobody, cookie kept", s, w.Header()["Set-Cookie"])
	}
	if !strings.Contains(f.logs.String(), anonymous.ErrInvalidUser.Error()) {
		t.Errorf("nothing logged: %s", f.logs)
	}

	var linkErr error
	login := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		linkErr = f.m.Link(w, r, &anonymous.User{Name: "no id"})
	}))
	r := httptest.NewRequest("POST", "https://shop.example/login", nil)
	r.AddCookie(cookie)
	w = httptest.NewRecorder()
	login.ServeHTTP(w, r)
	if !errors.Is(linkErr, anonymous.ErrInvalidUser) || cookieExpired(t, w) {
		t.Errorf("Link with a user without an ID: %v, cookie expired %v; want ErrInvalidUser, cookie kept", linkErr, cookieExpired(t, w))
	}

	if c.calls.Load() != 0 || deleted.Load() != 0 {
		t.Errorf("OnLinkAccount ran %d times, OnGuestDeleted %d; want neither", c.calls.Load(), deleted.Load())
	}
	rec, err := storedRecord(f.store.Store, g.ID)
	if err != nil || rec.Deleted || rec.LinkedTo != "" || rec.ClaimOwner != "" {
		t.Fatalf("the guest's record is %+v, %v; want it live and unclaimed", rec, err)
	}
	if _, s := f.send(t, "GET", "/", withCookie(cookie)); s.ID != g.ID {
		t.Errorf("the guest's cookie then opened %q, want %q", s.ID, g.ID)
	}
}
