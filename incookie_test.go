package anonymous_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// A browser of these tests: the guest cookie it holds, as a browser keeps
// the last one it was sent.
type browserJar struct{ c *http.Cookie }

func (b *browserJar) keep(w *httptest.ResponseRecorder) {
	for _, c := range w.Result().Cookies() {
		if c.Name == defaultCookie {
			b.c = c
			if c.MaxAge < 0 {
				b.c = nil
			}
		}
	}
}

// req sends a request with the browser's cookie and keeps the one the
// answer sets.
func (b *browserJar) req(t *testing.T, f *fixture, method, target string, opts ...reqOpt) (*httptest.ResponseRecorder, seen) {
	t.Helper()
	w, s := f.send(t, method, target, append(opts, withCookie(b.c))...)
	b.keep(w)
	return w, s
}

// Sixty browsers behind one address (an office's NAT) each add an item to
// a cart: every one keeps it, though the budget stores only its burst and
// the rate's share of the elapsed time.
func TestBrowsersBehindOneAddressKeepTheirCarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const browsers, burst = 60, 20
		f := newFixture(t, anonymous.Options{})
		start := time.Now()
		jars := make([]browserJar, browsers)
		for i := range jars {
			jars[i].req(t, f, "GET", "/", withRemote(victimIP))
			if w, _ := jars[i].req(t, f, "POST", "/add", withRemote(victimIP)); w.Header().Get("X-Err") != "" {
				t.Fatalf("browser %d: adding to its cart: %s", i, w.Header().Get("X-Err"))
			}
			time.Sleep(time.Second)
		}
		for i := range jars {
			if w, _ := jars[i].req(t, f, "GET", "/", withRemote(victimIP)); w.Header().Get("X-Data") != "x" {
				t.Errorf("browser %d's cart holds %q, want its item", i, w.Header().Get("X-Data"))
			}
		}
		// Burst, then 100 an hour.
		allowed := burst + int((time.Since(start)*100+time.Hour-1)/time.Hour)
		if n := f.stored(); n > allowed || n < burst {
			t.Errorf("%d guests stored from one address, want %d to %d", n, burst, allowed)
		}
	})
}

// A guest held in its cookie keeps at most 1 KiB of data there; its window
// starts again with each update, so an active visitor keeps its cart; it is
// stored, data and all, once the budget allows.
func TestGuestHeldInItsCookie(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := &switchLimiter{}
		lim.refuse.Store(true)
		f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Limiter: lim}})
		var size atomic.Int64
		size.Store(1024)
		f.h = f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				if _, err := f.m.UpdateData(w, r, func([]byte) ([]byte, error) {
					return []byte(strings.Repeat("c", int(size.Load()))), nil
				}); err != nil {
					http.Error(w, err.Error(), http.StatusConflict)
					return
				}
			}
			w.Header().Set("X-Size", strconv.Itoa(len(anonymous.DataFrom(r.Context()))))
		}))
		w, _ := f.send(t, "GET", "/")
		b := &browserJar{c: guestCookie(t, w)}
		do := func(method string) *httptest.ResponseRecorder {
			w, _ := f.send(t, method, "/", withCookie(b.c))
			b.keep(w)
			return w
		}
		if w := do("POST"); w.Code != http.StatusOK || b.c.MaxAge != 3600 || len(w.Header().Get("Set-Cookie")) > 4096 {
			t.Fatalf("1 KiB over budget: %d %s, cookie %+v", w.Code, w.Body, b.c)
		}
		size.Store(1025)
		if w := do("POST"); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), anonymous.ErrDataTooLarge.Error()) {
			t.Fatalf("1 KiB + 1 over budget: %d %s, want ErrDataTooLarge", w.Code, w.Body)
		}
		for range 3 { // an active visitor, over the first-visit window
			time.Sleep(50 * time.Minute)
			size.Store(1024)
			if w := do("POST"); w.Code != http.StatusOK {
				t.Fatalf("an update 50 minutes after the last: %d %s", w.Code, w.Body)
			}
		}
		if w := do("GET"); w.Header().Get("X-Size") != "1024" || f.stored() != 0 {
			t.Fatalf("after 150 minutes: data of %s bytes, %d stored", w.Header().Get("X-Size"), f.stored())
		}
		lim.refuse.Store(false)
		if w := do("GET"); w.Header().Get("X-Size") != "1024" || b.c.MaxAge == 3600 || f.stored() != 1 {
			t.Errorf("once the budget allows: data of %s bytes, cookie %+v, %d stored; want it stored with its data",
				w.Header().Get("X-Size"), b.c, f.stored())
		}
	})
}

// linkTabs logs the browser's guest in as user from n tabs at once and
// returns the number of OnLinkAccount calls and the data they got.
func linkTabs(t *testing.T, f *fixture, b *browserJar, user string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			w, s := f.send(t, "GET", "/", withRemote(victimIP), withCookie(b.c), withUser(user))
			if w.Code != http.StatusOK || s.ID != user {
				t.Errorf("a tab's login: %d, saw %+v", w.Code, s)
			}
		})
	}
	wg.Wait()
}

// A guest that was never stored, with a cart of 3 in its cookie, logs in
// from 16 tabs at once: OnLinkAccount runs once, with the 3 items, and the
// same cookie replayed afterwards with another user links nothing. On a
// store with room, and on a full one.
func TestNeverStoredGuestLinksOnce(t *testing.T) {
	for name, maxBytes := range map[string]int64{"room": 0, "full": 4 * guestBytes} {
		t.Run(name, func(t *testing.T) {
			var links []anonymous.LinkEvent
			var mu sync.Mutex
			ms := newMemstore(t, memstore.Options{MaxBytes: maxBytes})
			opts := anonymous.Options{
				Keys:     []anonymous.Key{{Hash: hashKey1}},
				Budget:   anonymous.Budget{Levels: perClient(1, time.Hour, 1)},
				Identify: identifyHeader,
				OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error {
					mu.Lock()
					defer mu.Unlock()
					links = append(links, ev)
					return nil
				},
			}
			f := newFixtureOn(t, ms, opts)
			for i := range int(maxBytes / guestBytes) { // a flood fills the store, from addresses of its own
				if w, _ := f.send(t, "POST", "/api/auth/sign-in/anonymous", withRemote("203.0.113."+strconv.Itoa(i+1)+":1")); w.Code != 200 {
					t.Fatalf("the flood's sign-in: %d", w.Code)
				}
			}
			f.send(t, "POST", "/api/auth/sign-in/anonymous", withRemote(victimIP)) // the visitor's address has spent its budget
			b := &browserJar{}
			b.req(t, f, "GET", "/", withRemote(victimIP))
			if w, _ := b.req(t, f, "POST", "/add?n&n&n", withRemote(victimIP)); w.Header().Get("X-Err") != "" {
				t.Fatalf("adding 3 to a cart: %s", w.Header().Values("X-Err"))
			}
			replay := b.c
			linkTabs(t, f, b, "alice", 16)
			if len(links) != 1 || string(links[0].Data) != "xxx" || links[0].NewUser.User.ID != "alice" {
				t.Fatalf("OnLinkAccount got %d links (%+v), want one to alice with the 3 items", len(links), links)
			}
			b.c = replay
			linkTabs(t, f, b, "mallory", 1)
			if len(links) != 1 {
				t.Errorf("the replayed cookie linked again: %+v", links[1:])
			}
		})
	}
}

// sign-in/anonymous issues a token that must work without a cookie: on a
// full store it answers 503 with Retry-After.
func TestSignInOnAFullStore(t *testing.T) {
	ms := newMemstore(t, memstore.Options{MaxBytes: guestBytes})
	f := newFixtureOn(t, ms, anonymous.Options{Budget: anonymous.Budget{Off: true}})
	f.send(t, "POST", "/api/auth/sign-in/anonymous", withRemote(victimIP))
	w, _ := f.send(t, "POST", "/api/auth/sign-in/anonymous", withRemote(attackerIP))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "30" || !strings.Contains(w.Body.String(), `"STORE_FULL"`) {
		t.Errorf("sign-in on a full store: %d, Retry-After %q, %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
}

// An update on a request whose lookup the budget refused, made after a
// sibling request stored the guest, updates the stored guest: the item is
// neither held in a stale cookie nor lost with the guest after the grace.
func TestUpdateAfterASiblingStoredTheGuest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := &switchLimiter{}
		f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Limiter: lim}})
		var guestID string
		f.h = f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u := anonymous.UserFrom(r.Context()); u != nil {
				w.Header().Set("X-ID", u.ID)
			}
			w.Header().Set("X-Data", string(anonymous.DataFrom(r.Context())))
			if r.URL.Path != "/add" {
				return
			}
			lim.refuse.Store(false) // a token came back
			c, _ := r.Cookie(defaultCookie)
			sib, _ := f.send(t, "GET", "/", withCookie(c)) // the page's other request stores the guest
			guestID = sib.Header().Get("X-ID")
			if _, err := f.m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, 'x'), nil }); err != nil {
				t.Errorf("UpdateData: %v", err)
			}
		}))
		w, _ := f.send(t, "GET", "/")
		F := guestCookie(t, w)
		lim.refuse.Store(true)
		w, _ = f.send(t, "POST", "/add", withCookie(F))
		c := guestCookie(t, w)
		t.Logf("A's Set-Cookie MaxAge %d; stored: %v", c.MaxAge, f.stored())
		w, _ = f.send(t, "GET", "/", withCookie(c))
		if got := w.Header().Get("X-Data"); got != "x" {
			t.Errorf("next request: data %q, want the item UpdateData accepted", got)
		}
		time.Sleep(11 * time.Second)
		w, _ = f.send(t, "GET", "/", withCookie(c))
		if got := w.Header().Get("X-ID"); got != guestID {
			t.Errorf("after 10 s the browser's cookie opens guest %q, want %q (the stored one)", got, guestID)
		}
	})
}

// An update on a request whose lookup the budget refused, made after a
// login in another tab linked the guest, is refused (ErrNotFound), or its
// item is in the link: never lost with a nil error.
func TestUpdateDuringALinkInAnotherTab(t *testing.T) {
	lim := &clientOnlyLimiter{}
	var links []anonymous.LinkEvent
	f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Limiter: lim}, Identify: identifyHeader,
		OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error { links = append(links, ev); return nil }})
	var updErr error
	f.h = f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/add" {
			return
		}
		c, _ := r.Cookie(defaultCookie)
		// Tab B: the login, while tab A's request runs.
		f.send(t, "GET", "/", withCookie(c), withUser("alice"))
		_, updErr = f.m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, 'y'), nil })
	}))
	w, _ := f.send(t, "GET", "/")
	F := guestCookie(t, w)
	lim.refuse.Store(true)
	f.send(t, "POST", "/add", withCookie(F))
	if updErr == nil && (len(links) != 1 || string(links[0].Data) != "y") {
		t.Errorf("UpdateData returned nil during the link, yet OnLinkAccount got %d links, data %q: the item is lost without an error",
			len(links), func() string {
				if len(links) > 0 {
					return string(links[0].Data)
				}
				return ""
			}())
	}
}

// clientOnlyLimiter refuses clients while refuse is set; accounts never.
type clientOnlyLimiter struct{ switchLimiter }

func (l *clientOnlyLimiter) Take(ctx context.Context, charges []anonymous.Charge) (time.Duration, error) {
	if strings.HasPrefix(charges[0].Key, "account ") {
		return 0, nil
	}
	return l.switchLimiter.Take(ctx, charges)
}

// Cookie size: the largest held guest (256-byte name and email, 1 KiB of
// data, a Block key, a long Domain) round-trips, under 4096 bytes.
func TestLargestGuestHeldInItsCookie(t *testing.T) {
	for _, block := range [][]byte{nil, []byte("0123456789abcdef0123456789abcdeX")} {
		lim := &switchLimiter{}
		lim.refuse.Store(true)
		dom := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + ".example.com"
		f := newFixture(t, anonymous.Options{
			Keys:         []anonymous.Key{{Hash: hashKey1, Block: block}},
			CookieName:   "anonymous_guest",
			CookieDomain: dom,
			Budget:       anonymous.Budget{Limiter: lim},
			GenerateName: func(context.Context) string { return strings.Repeat("\u00e9", 128) },
			GenerateRandomEmail: func(context.Context) (string, error) {
				return strings.Repeat("e", 200) + "@" + strings.Repeat("d", 51) + ".com", nil
			},
		})
		f.h = f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Size", strconv.Itoa(len(anonymous.DataFrom(r.Context()))))
			if r.Method == "POST" {
				if _, err := f.m.UpdateData(w, r, func([]byte) ([]byte, error) { return []byte(strings.Repeat("\xff", 1024)), nil }); err != nil {
					t.Error(err)
				}
			}
		}))
		w, _ := f.send(t, "GET", "/")
		F := guestCookie(t, w)
		if F == nil {
			t.Fatalf("block %v: no first-visit cookie", block != nil)
		}
		w, _ = f.send(t, "POST", "/", withCookie(F))
		sc := w.Header()["Set-Cookie"]
		c := guestCookie(t, w)
		if c == nil {
			t.Fatalf("block %v: no cookie after the update; logs %s", block != nil, f.logs.String())
		}
		// Browsers keep at most 4096 bytes of a cookie; a header line
		// ("Set-Cookie: ", the value and its attributes, CRLF) over that
		// also overflows proxies' default 4 KB header buffers.
		for _, l := range sc {
			if n := len("Set-Cookie: ") + len(l) + len("\r\n"); n >= 4096 {
				t.Errorf("block %v: a Set-Cookie header line of %d bytes, want under 4096", block != nil, n)
			}
		}
		t.Logf("block %v: Set-Cookie %d bytes, name+value %d", block != nil, len(sc[0]), len(c.Name)+len(c.Value))
		if w, _ := f.send(t, "GET", "/", withCookie(c)); w.Header().Get("X-Size") != "1024" {
			t.Errorf("block %v: data of %s bytes read back", block != nil, w.Header().Get("X-Size"))
		}
	}
}

// A visitor held in its cookie who keeps browsing, without updating, while
// its address stays over budget, keeps its cart past FirstVisitWindow.
func TestHeldCartOutlivesTheWindowWhileBrowsing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := &switchLimiter{}
		lim.refuse.Store(true)
		f := newFixture(t, anonymous.Options{Budget: anonymous.Budget{Limiter: lim}})
		b := &browserJar{}
		b.req(t, f, "GET", "/", withRemote(victimIP))
		b.req(t, f, "POST", "/add", withRemote(victimIP))
		for i := range 8 { // a page every 10 minutes
			time.Sleep(10 * time.Minute)
			if w, _ := b.req(t, f, "GET", "/", withRemote(victimIP)); w.Header().Get("X-Data") != "x" {
				t.Fatalf("after %d minutes of browsing the cart is %q, want \"x\"", 10*(i+1), w.Header().Get("X-Data"))
			}
		}
	})
}

// lostAnswerStore writes a claimed Create, then answers with an error once
// (a Redis timeout after the write).
type lostAnswerStore struct {
	*memstore.Store
	once atomic.Bool
}

func (s *lostAnswerStore) Create(ctx context.Context, key string, e anonymous.Entry) error {
	err := s.Store.Create(ctx, key, e)
	if err == nil && e.Durable && s.once.CompareAndSwap(false, true) {
		return errors.New("i/o timeout")
	}
	return err
}

// A link whose claimed Create was written, though its answer was lost,
// finds the claim its own and links the guest with its cart, rather than
// leaving it stored, claimed by nobody, out of its cookie's reach.
func TestLinkAdoptsItsClaimWhoseAnswerWasLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &lostAnswerStore{Store: newMemstore(t, memstore.Options{})}
		lim := &clientOnlyLimiter{}
		lim.refuse.Store(true)
		var links []anonymous.LinkEvent
		f := newFixtureOn(t, st, anonymous.Options{Identify: identifyHeader,
			Budget:        anonymous.Budget{Limiter: lim},
			OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error { links = append(links, ev); return nil }})
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {})
		mux.HandleFunc("/add", func(w http.ResponseWriter, r *http.Request) {
			if _, err := f.m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, 'x'), nil }); err != nil {
				t.Error(err)
			}
		})
		f.h = f.m.Middleware(mux)
		b := &browserJar{}
		b.req(t, f, "GET", "/", withRemote(victimIP))
		b.req(t, f, "POST", "/add", withRemote(victimIP))
		b.req(t, f, "GET", "/", withRemote(victimIP), withUser("alice")) // the Create's answer is lost
		time.Sleep(30 * time.Second)                                     // the user reads the page
		b.req(t, f, "GET", "/", withRemote(victimIP), withUser("alice"))
		time.Sleep(2 * time.Minute)
		b.req(t, f, "GET", "/", withRemote(victimIP), withUser("alice"))
		if len(links) != 1 || string(links[0].Data) != "x" {
			t.Errorf("OnLinkAccount got %d links (%+v), want one with the cart", len(links), links)
		}
	})
}

// delete-anonymous-user on a guest held in its cookie, with a cart: 200,
// the cookie expired, OnGuestDeleted told.
func TestDeleteAGuestHeldInItsCookie(t *testing.T) {
	var deleted []string
	f := newFixture(t, anonymous.Options{
		Budget:         anonymous.Budget{Levels: perClient(1, time.Hour, 1)},
		OnGuestDeleted: func(_ context.Context, u *anonymous.User, _ anonymous.DeleteReason) { deleted = append(deleted, u.ID) },
	})
	w, _ := f.send(t, "GET", "/", withRemote(victimIP))
	f.send(t, "GET", "/", withRemote(victimIP), withCookie(guestCookie(t, w))) // the budget is spent
	b := &browserJar{}
	_, g := b.req(t, f, "GET", "/", withRemote(victimIP))
	b.req(t, f, "POST", "/add", withRemote(victimIP))
	if w, _ := b.req(t, f, "POST", "/api/auth/delete-anonymous-user", withRemote(victimIP)); w.Code != http.StatusOK || b.c != nil {
		t.Errorf("deleting a guest held in its cookie: %d %s, cookie %+v; want 200 and the cookie expired", w.Code, w.Body, b.c)
	}
	if len(deleted) != 1 || deleted[0] != g.ID {
		t.Errorf("OnGuestDeleted heard %v, want %s", deleted, g.ID)
	}
}

// newHeldShop is a fixture whose visitors' addresses are over budget
// (accounts are not), so that its guests are held in their cookies; cs
// hears the links.
func newHeldShop(t *testing.T, opts anonymous.Options) (f *fixture, cs *carts) {
	t.Helper()
	lim := &clientOnlyLimiter{}
	lim.refuse.Store(true)
	cs = newCarts()
	opts.Budget = anonymous.Budget{Limiter: lim}
	opts.OnLinkAccount = cs.onLink
	return newFixture(t, opts), cs
}

// A guest held in its cookie that adds an item at intervals shorter than
// FirstVisitWindow, though longer in all, keeps every item: each update
// starts its cookie's window again. Intervals under half the window get no
// renewal but the update's; those over half get both.
func TestHeldCartWindowRestartsWithEachUpdate(t *testing.T) {
	for _, every := range []time.Duration{25 * time.Minute, 50 * time.Minute} {
		t.Run(every.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f, _ := newHeldShop(t, anonymous.Options{})
				b := &browserJar{}
				b.req(t, f, "GET", "/", withRemote(victimIP))
				want := ""
				for i := range 5 { // 5 intervals: over the hour's window
					time.Sleep(every)
					item := string(rune('a' + i))
					want += item + ","
					if w, _ := b.req(t, f, "POST", "/add?item="+item, withRemote(victimIP)); w.Code != http.StatusOK || w.Header().Get("X-Data") != want {
						t.Fatalf("adding %s after %v: %d %s, cart %q; want %q",
							item, every*time.Duration(i+1), w.Code, w.Body, w.Header().Get("X-Data"), want)
					}
				}
				if w, _ := b.req(t, f, "GET", "/", withRemote(victimIP)); w.Header().Get("X-Data") != want || f.stored() != 0 {
					t.Errorf("the cart reads %q, %d stored; want %q held in the cookie", w.Header().Get("X-Data"), f.stored(), want)
				}
			})
		})
	}
}

// After a held guest's login, its last cookie from before the login,
// replayed with another user a second before it expires, links nothing:
// the record the login stored reserves the guest's id for longer than any
// cookie of the guest lives.
func TestHeldGuestReservationOutlivesItsCookies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, cs := newHeldShop(t, anonymous.Options{Identify: identifyHeader})
		b := &browserJar{}
		b.req(t, f, "GET", "/", withRemote(victimIP))
		b.req(t, f, "POST", "/add?item=a", withRemote(victimIP))
		time.Sleep(20 * time.Minute)
		b.req(t, f, "POST", "/add?item=b", withRemote(victimIP)) // the cookie's window starts again
		replay := b.c
		issued := time.Now()
		time.Sleep(5 * time.Minute)
		b.req(t, f, "GET", "/", withRemote(victimIP), withUser("alice"))
		if l := cs.linked(); len(l) != 1 || string(l[0].Data) != "a,b," || b.c != nil {
			t.Fatalf("the login: %d links, cookie %+v; want one with the cart, the cookie expired", len(l), b.c)
		}
		stored := f.stored()
		time.Sleep(time.Until(issued.Add(time.Hour - time.Second)))
		b.c = replay
		b.req(t, f, "GET", "/", withRemote(victimIP), withUser("mallory"))
		if l := cs.linked(); len(l) != 1 || f.stored() != stored {
			t.Errorf("the pre-login cookie, replayed a second before it expires: %d links, %d records stored, was %d; want the one link",
				len(l), f.stored(), stored)
		}
	})
}

// Link, called by the application's login handler, on a guest the budget
// never stored: it returns nil, OnLinkAccount runs once with the cart the
// cookie holds, the answer expires the guest cookie, and the old cookie,
// replayed with another user's login, links nothing.
func TestLinkOfANeverStoredGuest(t *testing.T) {
	f, cs := newHeldShop(t, anonymous.Options{})
	b := &browserJar{}
	b.req(t, f, "GET", "/", withRemote(victimIP))
	b.req(t, f, "POST", "/add?item=tea", withRemote(victimIP))
	b.req(t, f, "POST", "/add?item=mug", withRemote(victimIP))
	if f.stored() != 0 {
		t.Fatalf("%d guests stored; want the visitor held in its cookie", f.stored())
	}
	replay := b.c
	w, _ := b.req(t, f, "POST", "/login?user=alice", withRemote(victimIP))
	if w.Code != http.StatusOK {
		t.Fatalf("Link: %d %s", w.Code, w.Body)
	}
	if l := cs.linked(); len(l) != 1 || string(l[0].Data) != "tea,mug," || l[0].NewUser.User.ID != "alice" {
		t.Fatalf("OnLinkAccount heard %d links; want one to alice with the cart", len(l))
	}
	// One line for the guest cookie, which expires it: a client or proxy
	// that reads the first line alone must not keep the cookie.
	var lines []*http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == defaultCookie {
			lines = append(lines, c)
		}
	}
	if len(lines) != 1 || lines[0].MaxAge >= 0 {
		t.Errorf("Link's answer sets the guest cookie %d times (Set-Cookie %q); want one line that expires it", len(lines), w.Header()["Set-Cookie"])
	}
	b.c = replay
	if w, _ := b.req(t, f, "POST", "/login?user=mallory", withRemote(victimIP)); w.Code != http.StatusOK || len(cs.linked()) != 1 {
		t.Errorf("the old cookie replayed with another login: %d %s, %d links; want nil and no new link", w.Code, w.Body, len(cs.linked()))
	}
}

// The data of a guest held in its cookie is signed, and encrypted when the
// first Key has a Block: with one, it is nowhere in the cookie's value nor
// in its base64 layers; without, it is there, readable, as the docs say.
// Either way the cart reads back.
func TestHeldDataInTheCookieIsEncryptedWithABlockKey(t *testing.T) {
	const marker = "SECRET-ITEM-7f3a"
	for _, block := range [][]byte{nil, []byte("0123456789abcdef0123456789abcdeX")} {
		f, _ := newHeldShop(t, anonymous.Options{Keys: []anonymous.Key{{Hash: hashKey1, Block: block}}})
		b := &browserJar{}
		b.req(t, f, "GET", "/", withRemote(victimIP))
		b.req(t, f, "POST", "/add?item="+marker, withRemote(victimIP))
		if w, _ := b.req(t, f, "GET", "/", withRemote(victimIP)); w.Header().Get("X-Data") != marker+"," || f.stored() != 0 {
			t.Fatalf("block %v: the cart reads %q, %d stored; want the item held in the cookie", block != nil, w.Header().Get("X-Data"), f.stored())
		}
		// The value is base64 of "date|base64(payload)|mac".
		layers := []string{b.c.Value}
		if outer, err := base64.URLEncoding.DecodeString(b.c.Value); err == nil {
			layers = append(layers, string(outer))
			// The mac is raw bytes, which may hold a '|': split off two fields.
			if f := strings.SplitN(string(outer), "|", 3); len(f) == 3 {
				if inner, err := base64.URLEncoding.DecodeString(f[1]); err == nil {
					layers = append(layers, string(inner))
				}
			}
		}
		if len(layers) != 3 {
			t.Fatalf("block %v: the cookie value decodes to %d layers, want 3", block != nil, len(layers))
		}
		readable := slices.ContainsFunc(layers, func(l string) bool { return strings.Contains(l, marker) })
		if readable != (block == nil) {
			t.Errorf("block %v: the item is readable in the cookie: %v", block != nil, readable)
		}
	}
}
