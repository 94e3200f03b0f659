package anonymous_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

var (
	hashKey1 = []byte("0123456789abcdef0123456789abcdef")
	hashKey2 = []byte("fedcba9876543210fedcba9876543210")
)

// countingStore is a real memstore that counts calls and can be made to fail,
// to check what the middleware asks of its store. Updates are counted as a
// whole, and as claims (a lease written) and deletes (a record buried).
type countingStore struct {
	anonymous.Store
	creates, gets, updates, claims, deletes atomic.Int64
	fail                                    atomic.Bool // every call fails

	mu      sync.Mutex
	failing map[string]bool // the methods that fail, by name
}

// setFail makes the named methods (Create, Get, Update) fail, and no other.
func (s *countingStore) setFail(methods ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = map[string]bool{}
	for _, m := range methods {
		s.failing[m] = true
	}
}

func (s *countingStore) fails(method string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail.Load() || s.failing[method]
}

var errDown = errors.New("store is down")

func (s *countingStore) Create(ctx context.Context, key string, e anonymous.Entry) error {
	s.creates.Add(1)
	if s.fails("Create") {
		return errDown
	}
	return s.Store.Create(ctx, key, e)
}

func (s *countingStore) Get(ctx context.Context, key string) (anonymous.Entry, error) {
	s.gets.Add(1)
	if s.fails("Get") {
		return anonymous.Entry{}, errDown
	}
	return s.Store.Get(ctx, key)
}

func (s *countingStore) Update(ctx context.Context, key string, e anonymous.Entry) error {
	s.updates.Add(1)
	if rec, err := anonymous.DecodeRecord(key, e); err == nil {
		switch {
		case rec.Deleted:
			s.deletes.Add(1)
		case rec.ClaimOwner != "":
			s.claims.Add(1)
		}
	}
	if s.fails("Update") {
		return errDown
	}
	return s.Store.Update(ctx, key, e)
}

// storedRecord returns the record store holds for guest id.
func storedRecord(store anonymous.Store, id string) (*anonymous.Record, error) {
	e, err := store.Get(context.Background(), id)
	if err != nil {
		return nil, err
	}
	return anonymous.DecodeRecord(id, e)
}

// rewrite writes rec over its stored version, as another process would.
func rewrite(store anonymous.Store, rec *anonymous.Record) error {
	e := anonymous.Entry{Value: anonymous.EncodeRecord(rec), Version: rec.Version, Expires: rec.Session.ExpiresAt}
	return store.Update(context.Background(), rec.User.ID, e)
}

// buried reports whether store keeps no guest under id: nothing, or what a
// deleted guest leaves, which holds no token hash, data or personal data.
func buried(store anonymous.Store, id string) bool {
	rec, err := storedRecord(store, id)
	if errors.Is(err, anonymous.ErrNotFound) {
		return true
	}
	return err == nil && rec.Deleted && rec.TokenHash == [32]byte{} && rec.Data == nil &&
		rec.User.Email == "" && rec.Session.UserAgent == "" && rec.Session.IPAddress == ""
}

func (s *countingStore) writes() int64 { return s.creates.Load() + s.updates.Load() }

// stored returns how many records the fixture's memstore holds.
func (f *fixture) stored() int { return f.store.Store.(*memstore.Store).Len() }

// logBuffer collects ErrorLog output from concurrent requests.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixture is a Manager on a counting store, in front of the test app, with
// its log captured: the one harness of these tests (see newFixtureOn).
type fixture struct {
	m     *anonymous.Manager
	store *countingStore
	logs  *logBuffer
	h     http.Handler   // the middleware in front of mux, unless a test replaces it
	mux   *http.ServeMux // the test app
}

// seen is what the test handler reports about the request's user.
type seen struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Email       string `json:"email"`
	IsAnonymous bool   `json:"isAnonymous"`
	Token       string `json:"token"`
}

// newMemstore returns a memstore with options o, closed when the test ends.
func newMemstore(t testing.TB, o memstore.Options) *memstore.Store {
	t.Helper()
	ms, err := memstore.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	return ms
}

// defaultCookie is the guest cookie's documented default name.
const defaultCookie = "__Host-anonymous_guest"

// onReturn and onIssue name Options.PersistOnIssue's two values.
const onReturn, onIssue = false, true

// newFixture builds a Manager on a fresh memstore with fixed keys, in front
// of the test app (see newFixtureOn).
func newFixture(t testing.TB, opts anonymous.Options) *fixture {
	t.Helper()
	ms := newMemstore(t, memstore.Options{})
	return newFixtureOn(t, ms, opts)
}

// newFixtureOn is newFixture on the store ms. Its app answers
//
//   - "/" with the request's user as JSON (seen, {} for none) and the
//     guest's data in X-Data;
//   - "/add" by appending an x (or "item,", given ?item) to the data for
//     each n in its query (at least one), with the data in X-Data and
//     errors in X-Err;
//   - "/login?user=u" by linking the guest to u with Link;
//   - "POST /cart?item=x" by adding an x to the data as a JSON cart, which
//     "GET /cart" lists in X-Item headers;
//   - "/page" as "/", the cart's size in X-Cart; a POST adds ?item first.
//
// The middleware serves the endpoints; a test adds routes to f.mux.
func newFixtureOn(t testing.TB, ms anonymous.Store, opts anonymous.Options) *fixture {
	t.Helper()
	f := &fixture{store: &countingStore{Store: ms}, logs: &logBuffer{}, mux: http.NewServeMux()}
	if opts.Keys == nil {
		opts.Keys = []anonymous.Key{{Hash: hashKey1}}
	}
	if opts.ErrorLog == nil {
		opts.ErrorLog = slog.New(slog.NewTextHandler(f.logs, nil))
	}
	m, err := anonymous.New(f.store, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.m, f.h = m, m.Middleware(f.mux)
	report := func(w http.ResponseWriter, r *http.Request) {
		var s seen
		if u := anonymous.UserFrom(r.Context()); u != nil {
			s = seen{ID: u.ID, Name: u.Name, Email: u.Email, IsAnonymous: u.IsAnonymous}
		}
		if sess := anonymous.SessionFrom(r.Context()); sess != nil {
			s.Token = sess.Token
		}
		json.NewEncoder(w).Encode(s)
	}
	addToCart := func(w http.ResponseWriter, r *http.Request) (cart, bool) {
		item := r.FormValue("item")
		c, err := anonymous.UpdateJSON(m, w, r, func(c *cart) error {
			if *c == nil {
				*c = cart{}
			}
			(*c)[item]++
			return nil
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
		return c, err == nil
	}
	readCart := func(r *http.Request) cart {
		c, err := anonymous.JSONFrom[cart](r.Context())
		if err != nil {
			t.Errorf("JSONFrom: %v", err)
		}
		return c
	}
	f.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Data", string(anonymous.DataFrom(r.Context())))
		report(w, r)
	})
	f.mux.HandleFunc("/add", func(w http.ResponseWriter, r *http.Request) {
		add := "x"
		if item := r.FormValue("item"); item != "" {
			add = item + ","
		}
		for range max(1, len(r.URL.Query()["n"])) {
			d, err := m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, add...), nil })
			if err != nil {
				w.Header().Add("X-Err", err.Error())
				continue
			}
			w.Header().Set("X-Data", string(d))
		}
	})
	f.mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Link(w, r, &anonymous.User{ID: r.FormValue("user")}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	f.mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) { addToCart(w, r) })
	f.mux.HandleFunc("GET /cart", func(w http.ResponseWriter, r *http.Request) {
		for item, n := range readCart(r) {
			w.Header().Add("X-Item", item+"="+strconv.Itoa(n))
		}
	})
	f.mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		c := readCart(r)
		if r.Method == http.MethodPost {
			var ok bool
			if c, ok = addToCart(w, r); !ok {
				return
			}
		}
		n := 0
		for _, k := range c {
			n += k
		}
		w.Header().Set("X-Cart", strconv.Itoa(n))
		report(w, r)
	})
	return f
}

// cart is the guest data of "/cart" and "/page": item counts by name.
type cart map[string]int

// reqOpt sets something on a request of send.
type reqOpt func(*http.Request)

// withCookie adds the cookies cs that are not nil.
func withCookie(cs ...*http.Cookie) reqOpt {
	return func(r *http.Request) {
		for _, c := range cs {
			if c != nil {
				r.AddCookie(c)
			}
		}
	}
}

// withUser logs the request in as id (X-User, see identifyHeader), unless id is "".
func withUser(id string) reqOpt {
	return func(r *http.Request) {
		if id != "" {
			r.Header.Set("X-User", id)
		}
	}
}

func withRemote(addr string) reqOpt { return func(r *http.Request) { r.RemoteAddr = addr } }
func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }
func withBearer(tok string) reqOpt  { return withHeader("Authorization", "Bearer "+tok) }
func withBody(b io.Reader) reqOpt   { return func(r *http.Request) { r.Body = io.NopCloser(b) } }

// send serves one request for target (a path and query) on f.h, and
// decodes the user that "/" or "/page" reports (none for other answers).
func (f *fixture) send(t testing.TB, method, target string, opts ...reqOpt) (*httptest.ResponseRecorder, seen) {
	t.Helper()
	r := httptest.NewRequest(method, "https://shop.example"+target, nil)
	for _, o := range opts {
		o(r)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	var s seen
	if w.Code == http.StatusOK && strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") && w.Body.Len() > 0 {
		if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
			t.Fatalf("body %q: %v", w.Body, err)
		}
	}
	return w, s
}

func guestCookie(t testing.TB, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == defaultCookie || c.Name == "anonymous_guest" {
			return c
		}
	}
	return nil
}

func TestFirstVisitIssuesSecureCookie(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	w, s := f.send(t, "GET", "/")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if !s.IsAnonymous || len(s.ID) != 26 || s.Name != "Anonymous" {
		t.Errorf("handler saw %+v, want an anonymous guest named Anonymous with a ULID", s)
	}
	if want := "temp@" + strings.ToLower(s.ID) + ".com"; s.Email != want {
		t.Errorf("email %q, want %q", s.Email, want)
	}
	c := guestCookie(t, w)
	if c == nil {
		t.Fatalf("no guest cookie in %q", w.Header()["Set-Cookie"])
	}
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Errorf("cookie attributes: %+v", c)
	}
	// A first visit's cookie lives for FirstVisitWindow (1 hour).
	if c.MaxAge != 3600 {
		t.Errorf("Max-Age %d, want 3600", c.MaxAge)
	}
	if got := w.Header().Values("Vary"); !slices.Equal(got, []string{"Cookie", "Authorization"}) {
		t.Errorf("Vary %q", got)
	}
	if got := w.Header().Get("Cache-Control"); got != `no-cache="Set-Cookie"` {
		t.Errorf("Cache-Control %q", got)
	}
}

func TestReturningVisitorKeepsGuest(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	srv := httptest.NewTLSServer(f.h)
	defer srv.Close()
	client := srv.Client()
	client.Jar, _ = cookiejar.New(nil)
	var first, stored seen
	for i := range 5 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		var s seen
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch i {
		case 0:
			first = s
		case 1:
			stored = s // storing the guest gave it a new token
			if s.Token == first.Token {
				t.Errorf("the stored guest kept its first-visit token")
			}
		}
		if s.ID != first.ID || s.ID == "" || s.Name != first.Name || (i > 0 && s.Token != stored.Token) {
			t.Fatalf("request %d saw %+v, want guest %+v", i, s, first)
		}
		// Only the first two responses set a cookie: the issue, then the
		// short form once the guest is stored.
		if set := resp.Header.Get("Set-Cookie") != ""; set != (i < 2) {
			t.Errorf("request %d: Set-Cookie present = %v", i, set)
		}
	}
	if n := f.store.creates.Load(); n != 1 {
		t.Errorf("%d creates, want 1", n)
	}
	if _, err := storedRecord(f.store.Store, first.ID); err != nil {
		t.Errorf("guest not in store: %v", err)
	}
}

func TestBadCookiesGetFreshGuest(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	w, _ := f.send(t, "GET", "/")
	good := guestCookie(t, w)
	w, stored := f.send(t, "GET", "/", withCookie(good)) // now stored; the cookie is the short form
	short := guestCookie(t, w)

	otherKeys := newFixture(t, anonymous.Options{Keys: []anonymous.Key{{Hash: hashKey2}}})
	w, _ = otherKeys.send(t, "GET", "/")
	foreign := guestCookie(t, w)

	// Issued in a bubble, whose clock starts in 2000: long expired.
	var expired *http.Cookie
	synctest.Test(t, func(t *testing.T) {
		w, _ := newFixture(t, anonymous.Options{}).send(t, "GET", "/")
		expired = guestCookie(t, w)
	})

	// Same key, another cookie name: the name is inside the MAC.
	renamed := newFixture(t, anonymous.Options{CookieName: "other"})
	w, _ = renamed.send(t, "GET", "/")
	otherName := w.Result().Cookies()[0]

	unknownStore := newFixture(t, anonymous.Options{PersistOnIssue: true})
	w, _ = unknownStore.send(t, "GET", "/")
	unknown := guestCookie(t, w) // a stored guest's cookie, for another store

	flip := []byte(short.Value)
	flip[len(flip)/2] ^= 1
	cases := map[string]string{
		"tampered":    string(flip),
		"truncated":   short.Value[:len(short.Value)-5],
		"oversized":   strings.Repeat("A", 5000),
		"unknown key": foreign.Value,
		"garbage":     "%%%not-base64|||",
		"unknown id":  unknown.Value,
		"expired":     expired.Value,
		"other name":  otherName.Value,
	}

	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			before := f.store.creates.Load()
			w, s := f.send(t, "GET", "/", withCookie(&http.Cookie{Name: defaultCookie, Value: value}))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			if !s.IsAnonymous || s.ID == "" || s.ID == stored.ID {
				t.Errorf("saw %+v, want a fresh guest", s)
			}
			if guestCookie(t, w) == nil {
				t.Error("no fresh cookie set")
			}
			if f.store.creates.Load() != before {
				t.Error("a fresh guest was written before the visitor returned")
			}
		})
	}
	// None of that touched the real guest.
	if _, s := f.send(t, "GET", "/", withCookie(short)); s.ID != stored.ID {
		t.Errorf("stored guest lost: saw %q, want %q", s.ID, stored.ID)
	}
}

func TestKeyRotation(t *testing.T) {
	old := newFixture(t, anonymous.Options{Keys: []anonymous.Key{{Hash: hashKey1}}})
	w, _ := old.send(t, "GET", "/")
	w, before := old.send(t, "GET", "/", withCookie(guestCookie(t, w)))
	oldCookie := guestCookie(t, w)

	// Same store, new key first, old key kept for decoding.
	rotated := newFixtureOn(t, old.store, anonymous.Options{Keys: []anonymous.Key{{Hash: hashKey2}, {Hash: hashKey1}}})
	newOnly := newFixtureOn(t, old.store, anonymous.Options{Keys: []anonymous.Key{{Hash: hashKey2}}})
	if _, got := rotated.send(t, "GET", "/", withCookie(oldCookie)); got.ID != before.ID {
		t.Fatalf("old-key cookie gave %q, want %q", got.ID, before.ID)
	}

	// A new cookie from the rotated manager decodes with the new key alone.
	w, issued := rotated.send(t, "GET", "/")
	if _, got := newOnly.send(t, "GET", "/", withCookie(guestCookie(t, w))); got.ID != issued.ID {
		t.Errorf("new cookie not signed with the new key: %q, want %q", got.ID, issued.ID)
	}
}

func TestEncryptedCookies(t *testing.T) {
	f := newFixture(t, anonymous.Options{Keys: []anonymous.Key{{Hash: hashKey1, Block: []byte("0123456789abcdef")}}})
	w, first := f.send(t, "GET", "/")
	c := guestCookie(t, w)
	_, again := f.send(t, "GET", "/", withCookie(c))
	if again.ID != first.ID {
		t.Fatalf("encrypted cookie did not round-trip: %q vs %q", again.ID, first.ID)
	}
	// The payload is encrypted: the guest's id is not readable in it.
	if strings.Contains(c.Value, first.ID) {
		t.Error("cookie value contains the id in clear")
	}
}

func TestSkip(t *testing.T) {
	f := newFixture(t, anonymous.Options{Skip: func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/static/") }})
	w, _ := f.send(t, "GET", "/static/app.css")
	if len(w.Result().Cookies()) != 0 || w.Header().Get("Vary") != "" {
		t.Errorf("skipped request got headers %v", w.Header())
	}
	if !strings.Contains(w.Body.String(), `"id":""`) {
		t.Errorf("skipped request had a user: %s", w.Body)
	}
	if f.store.gets.Load()+f.store.writes() != 0 {
		t.Error("skipped request touched the store")
	}
}

func TestPersistOnReturn(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	w, first := f.send(t, "GET", "/")
	if f.store.creates.Load() != 0 || f.store.gets.Load() != 0 {
		t.Fatalf("first visit touched the store: %d creates, %d gets", f.store.creates.Load(), f.store.gets.Load())
	}
	if _, err := storedRecord(f.store.Store, first.ID); !errors.Is(err, anonymous.ErrNotFound) {
		t.Fatalf("guest stored on first visit: %v", err)
	}
	long := guestCookie(t, w)
	w, second := f.send(t, "GET", "/", withCookie(long))
	if second.ID != first.ID || second.Name != first.Name || second.Email != first.Email {
		t.Fatalf("second visit saw %+v, want %+v", second, first)
	}
	if n := f.store.creates.Load(); n != 1 {
		t.Fatalf("%d creates on return, want 1", n)
	}
	rec, err := storedRecord(f.store.Store, first.ID)
	if err != nil || rec.User.Email != first.Email || !rec.User.IsAnonymous {
		t.Fatalf("stored guest %+v, %v", rec, err)
	}
	short := guestCookie(t, w)
	if short == nil || len(short.Value) >= len(long.Value) {
		t.Fatal("the cookie was not re-set to its shorter stored form")
	}
	// A sibling request with the same first-visit cookie, moments later, is
	// served the same guest and handed the same new cookie.
	w, third := f.send(t, "GET", "/", withCookie(long))
	if third.ID != first.ID || third.Token != second.Token || guestCookie(t, w) == nil {
		t.Errorf("a sibling with the used first-visit cookie saw %+v, Set-Cookie %q; want %+v", third, w.Header()["Set-Cookie"], second)
	}
	if n := f.store.creates.Load(); n != 1 {
		t.Errorf("%d creates after a sibling, want 1: a sibling after the store finds the guest", n)
	}
	if _, again := f.send(t, "GET", "/", withCookie(short)); again.ID != first.ID {
		t.Errorf("the stored guest's cookie then gave %q", again.ID)
	}
}

// A first-visit cookie planted in a victim's browser (session fixation) is
// single-use: once either browser stored the guest, the other copy gets a
// guest of its own, and cannot read the victim's.
func TestPlantedFirstVisitCookie(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{})
		w, _ := f.send(t, "GET", "/")
		planted := guestCookie(t, w)
		w, victim := f.send(t, "GET", "/", withCookie(planted)) // the victim's browser stores it
		short := guestCookie(t, w)
		time.Sleep(time.Minute)
		_, attacker := f.send(t, "GET", "/", withCookie(planted))
		if attacker.ID == "" || attacker.ID == victim.ID {
			t.Fatalf("the attacker's copy saw %q, want a guest of its own (victim %q)", attacker.ID, victim.ID)
		}
		if _, s := f.send(t, "GET", "/", withCookie(short)); s.ID != victim.ID {
			t.Errorf("the victim lost its guest: saw %q", s.ID)
		}
	})
}

// A first-visit cookie stores its guest only within FirstVisitWindow.
func TestFirstVisitWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, anonymous.Options{FirstVisitWindow: 2 * time.Hour})
		w, first := f.send(t, "GET", "/")
		c := guestCookie(t, w)
		if c.MaxAge != 7200 {
			t.Errorf("first-visit cookie Max-Age %d, want 7200", c.MaxAge)
		}
		time.Sleep(2*time.Hour + time.Second)
		if _, s := f.send(t, "GET", "/", withCookie(c)); s.ID == first.ID || s.ID == "" {
			t.Errorf("a first-visit cookie past its window saw %q, want a new guest", s.ID)
		}
		if n := f.store.creates.Load(); n != 0 {
			t.Errorf("%d creates, want none: the new guest waits for its own return", n)
		}
	})
}

func TestPersistOnIssue(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true})
	w, first := f.send(t, "GET", "/")
	if n := f.store.creates.Load(); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
	if _, err := storedRecord(f.store.Store, first.ID); err != nil {
		t.Fatalf("guest not stored: %v", err)
	}
	_, again := f.send(t, "GET", "/", withCookie(guestCookie(t, w)))
	if again.ID != first.ID || f.store.creates.Load() != 1 {
		t.Errorf("return saw %q with %d creates", again.ID, f.store.creates.Load())
	}
}

func TestRefreshOncePerRefreshAfter(t *testing.T) {
	synctest.Test(t, testRefreshOncePerRefreshAfter)
}

func testRefreshOncePerRefreshAfter(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true})
	w, g := f.send(t, "GET", "/")
	c := guestCookie(t, w)
	for range 3 {
		time.Sleep(time.Hour)
		w, s := f.send(t, "GET", "/", withCookie(c))
		if s.ID != g.ID || guestCookie(t, w) != nil {
			t.Fatalf("within a day: saw %q, Set-Cookie %v", s.ID, w.Header()["Set-Cookie"])
		}
	}
	if n := f.store.updates.Load(); n != 0 {
		t.Fatalf("%d refreshes within RefreshAfter", n)
	}
	time.Sleep(22 * time.Hour) // 25h since issue
	w, _ = f.send(t, "GET", "/", withCookie(c))
	if n := f.store.updates.Load(); n != 1 {
		t.Fatalf("%d refreshes after a day, want 1", n)
	}
	c2 := guestCookie(t, w)
	if c2 == nil || c2.MaxAge != int((30*24*time.Hour).Seconds()) {
		t.Fatalf("refresh did not re-set the cookie with a full Max-Age: %v", c2)
	}
	rec, _ := storedRecord(f.store.Store, g.ID)
	if want := time.Now().Add(30 * 24 * time.Hour); !rec.Session.ExpiresAt.Equal(want) {
		t.Errorf("stored expiry %v, want %v", rec.Session.ExpiresAt, want)
	}
	f.send(t, "GET", "/", withCookie(c2))
	if n := f.store.updates.Load(); n != 1 {
		t.Errorf("%d refreshes right after a refresh, want 1", n)
	}
	// A guest past its lifetime is gone.
	time.Sleep(31 * 24 * time.Hour)
	if _, s := f.send(t, "GET", "/", withCookie(c2)); s.ID == g.ID {
		t.Error("expired guest still served")
	}
}

func TestStoreFailureKeepsGuest(t *testing.T) {
	for _, mode := range []bool{false, true} {
		t.Run(fmt.Sprintf("FailClosed=%v", mode), func(t *testing.T) {
			f := newFixture(t, anonymous.Options{FailClosed: mode, PersistOnIssue: true})
			w, g := f.send(t, "GET", "/")
			c := guestCookie(t, w)
			f.store.fail.Store(true)
			for _, cookies := range [][]*http.Cookie{{c}, nil} {
				w, s := f.send(t, "GET", "/", withCookie(cookies...))
				want := http.StatusOK
				if mode {
					want = http.StatusServiceUnavailable
				}
				if w.Code != want {
					t.Fatalf("status %d, want %d", w.Code, want)
				}
				if s.ID != "" {
					t.Errorf("handler saw a user while the store is down: %+v", s)
				}
				if len(w.Result().Cookies()) != 0 {
					t.Errorf("cookie changed while the store is down: %v", w.Header()["Set-Cookie"])
				}
			}
			if !strings.Contains(f.logs.String(), errDown.Error()) {
				t.Errorf("store error not logged: %q", f.logs.String())
			}
			f.store.fail.Store(false)
			if _, s := f.send(t, "GET", "/", withCookie(c)); s.ID != g.ID {
				t.Errorf("after recovery saw %q, want %q", s.ID, g.ID)
			}
		})
	}
}

func TestConcurrentFirstVisitsGetDistinctGuests(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true})
	const n = 200
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, s := f.send(t, "GET", "/")
			ids <- s.ID
		})
	}
	wg.Wait()
	close(ids)
	distinct := map[string]bool{}
	for id := range ids {
		if id == "" {
			t.Fatal("a visitor got no guest")
		}
		distinct[id] = true
	}
	if len(distinct) != n {
		t.Errorf("%d distinct ids for %d visitors", len(distinct), n)
	}
}

func TestBearerToken(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true})
	_, g := f.send(t, "GET", "/")
	w, s := f.send(t, "GET", "/", withBearer(g.Token))
	if s.ID != g.ID {
		t.Fatalf("bearer token gave %q, want %q", s.ID, g.ID)
	}
	if len(w.Result().Cookies()) != 0 {
		t.Error("a bearer request was sent a cookie")
	}
	// A forged secret for the same id is no credential.
	forged := g.Token[:len(g.Token)-4] + "AAAA"
	if _, s = f.send(t, "GET", "/", withBearer(forged)); s.ID == g.ID {
		t.Error("a forged bearer token was accepted")
	}
}

func TestGeneratedIdentity(t *testing.T) {
	cases := []struct {
		name      string
		opts      anonymous.Options
		wantEmail func(id string) string
		wantName  string
	}{
		{"default", anonymous.Options{}, func(id string) string { return "temp@" + strings.ToLower(id) + ".com" }, "Anonymous"},
		{"domain", anonymous.Options{EmailDomainName: "Example.com"}, func(id string) string { return "temp-" + strings.ToLower(id) + "@example.com" }, "Anonymous"},
		{"generators", anonymous.Options{
			EmailDomainName:     "ignored.example",
			GenerateRandomEmail: func(context.Context) (string, error) { return "Guest-42@Shop.Example", nil },
			GenerateName:        func(context.Context) string { return "Mystery Fox" },
		}, func(string) string { return "guest-42@shop.example" }, "Mystery Fox"},
		{"empty name", anonymous.Options{GenerateName: func(context.Context) string { return "" }},
			func(id string) string { return "temp@" + strings.ToLower(id) + ".com" }, "Anonymous"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.PersistOnIssue = true
			f := newFixture(t, tc.opts)
			_, s := f.send(t, "GET", "/")
			if s.Email != tc.wantEmail(s.ID) || s.Name != tc.wantName {
				t.Errorf("got %q %q, want %q %q", s.Email, s.Name, tc.wantEmail(s.ID), tc.wantName)
			}
			rec, err := storedRecord(f.store.Store, s.ID)
			if err != nil || rec.User.Email != s.Email {
				t.Errorf("stored %+v, %v", rec, err)
			}
		})
	}
}

func TestInvalidGeneratedEmailCreatesNoGuest(t *testing.T) {
	for _, bad := range []string{"not an email", "Name <x@y.example>", "", strings.Repeat("a", 300) + "@x.example"} {
		f := newFixture(t, anonymous.Options{
			PersistOnIssue:      true,
			GenerateRandomEmail: func(context.Context) (string, error) { return bad, nil },
		})
		w, s := f.send(t, "GET", "/")
		if w.Code != http.StatusOK || s.ID != "" || guestCookie(t, w) != nil {
			t.Errorf("%q: status %d, user %+v, cookie %v", bad, w.Code, s, w.Header()["Set-Cookie"])
		}
		if f.store.creates.Load() != 0 {
			t.Errorf("%q: a guest was stored", bad)
		}
		if !strings.Contains(f.logs.String(), "level=ERROR") {
			t.Errorf("%q: not logged", bad)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	ms := newMemstore(t, memstore.Options{})
	cases := map[string]anonymous.Options{
		"short hash key":     {Keys: []anonymous.Key{{Hash: []byte("short")}}},
		"bad block key":      {Keys: []anonymous.Key{{Hash: hashKey1, Block: []byte("seventeen bytes!!")}}},
		"no hash key":        {Keys: []anonymous.Key{{Block: []byte("0123456789abcdef")}}},
		"block is hash":      {Keys: []anonymous.Key{{Hash: hashKey1, Block: hashKey1}}},
		"repeated hash key":  {Keys: []anonymous.Key{{Hash: hashKey1}, {Hash: hashKey2}, {Hash: hashKey1}}},
		"negative lifetime":  {Lifetime: -time.Hour},
		"negative refresh":   {RefreshAfter: -time.Hour},
		"tiny lifetime":      {Lifetime: time.Millisecond},
		"bad cookie name":    {CookieName: "bad name;"},
		"bad cookie domain":  {CookieDomain: "exa mple.com"},
		"bad cookie path":    {CookiePath: "/a;b"},
		"insecure none":      {CookieSameSite: http.SameSiteNoneMode, CookieInsecure: true, CookieName: "g"},
		"zero hash key":      {Keys: []anonymous.Key{{Hash: make([]byte, 32)}}},
		"zero block key":     {Keys: []anonymous.Key{{Hash: hashKey1, Block: make([]byte, 16)}}},
		"wildcard origin":    {TrustedOrigins: []string{"https://*.example.com"}},
		"relative base path": {BasePath: "api/auth"},
		"bad email domain":   {EmailDomainName: "bad domain"},
		"bad origin":         {TrustedOrigins: []string{"not a url"}},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := anonymous.New(ms, opts); !errors.Is(err, anonymous.ErrInvalidOptions) {
				t.Errorf("New: %v, want ErrInvalidOptions", err)
			}
		})
	}
	if _, err := anonymous.New(nil, anonymous.Options{}); !errors.Is(err, anonymous.ErrInvalidOptions) {
		t.Errorf("nil store: %v", err)
	}
}

func TestNewWithoutKeysWarnsOnce(t *testing.T) {
	ms := newMemstore(t, memstore.Options{})
	var logs logBuffer
	m, err := anonymous.New(ms, anonymous.Options{ErrorLog: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "restart") {
		t.Errorf("want one warning about restarts, got %q", logs.String())
	}
	w := httptest.NewRecorder()
	m.Middleware(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if len(w.Result().Cookies()) != 1 {
		t.Error("zero-configuration manager issued no cookie")
	}
}

func TestUserFromIsNilSafe(t *testing.T) {
	if anonymous.UserFrom(context.Background()) != nil || anonymous.SessionFrom(context.Background()) != nil {
		t.Error("accessors returned something for an empty context")
	}
}

func TestJSONWireFormat(t *testing.T) {
	at := time.Date(2026, 11, 27, 19, 40, 36, 882_123_000, time.FixedZone("x", 3600))
	b, err := json.Marshal(anonymous.User{ID: "u1", Email: "temp@u1.com", Name: "Anonymous", CreatedAt: at, UpdatedAt: at, IsAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"u1","email":"temp@u1.com","emailVerified":false,"name":"Anonymous","createdAt":"2026-11-27T18:40:36.882Z","updatedAt":"2026-11-27T18:40:36.882Z","isAnonymous":true}`
	if string(b) != want {
		t.Errorf("user JSON\n got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(anonymous.Session{ID: "s1", Token: "t", UserID: "u1", ExpiresAt: at, CreatedAt: at, UpdatedAt: at})
	want = `{"id":"s1","token":"t","userId":"u1","expiresAt":"2026-11-27T18:40:36.882Z","createdAt":"2026-11-27T18:40:36.882Z","updatedAt":"2026-11-27T18:40:36.882Z","ipAddress":"","userAgent":""}`
	if string(b) != want {
		t.Errorf("session JSON\n got %s\nwant %s", b, want)
	}
	var u anonymous.User
	if err := json.Unmarshal([]byte(`{"id":"u1","createdAt":"2026-11-27T18:40:36.882Z","isAnonymous":true}`), &u); err != nil || !u.CreatedAt.Equal(at.Truncate(time.Millisecond)) {
		t.Errorf("round trip: %+v %v", u, err)
	}
}

// The middleware wraps no ResponseWriter: Flusher and Hijacker reach the
// handler as the server gave them.
func TestResponseWriterUnwrapped(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	var flusher, hijacker bool
	h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, flusher = w.(http.Flusher)
		_, hijacker = w.(http.Hijacker)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !flusher || !hijacker {
		t.Errorf("Flusher %v, Hijacker %v", flusher, hijacker)
	}
}

// A client-chosen User-Agent is stored bounded: it costs the store memory
// for the guest's whole life.
func TestUserAgentIsBounded(t *testing.T) {
	f := newFixture(t, anonymous.Options{PersistOnIssue: true})
	_, s := f.send(t, "GET", "/", withHeader("User-Agent", strings.Repeat("é", 10_000)))
	rec, err := storedRecord(f.store.Store, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ua := rec.Session.UserAgent; len(ua) == 0 || len(ua) > 512 || !utf8.ValidString(ua) {
		t.Errorf("stored User-Agent of %d bytes (valid UTF-8: %v)", len(ua), utf8.ValidString(ua))
	}
}

func TestCookieAttributesFollowOptions(t *testing.T) {
	f := newFixture(t, anonymous.Options{
		CookieName: "g", CookieDomain: ".shop.example", CookiePath: "/app",
		CookieInsecure: true, CookieSameSite: http.SameSiteStrictMode,
	})
	w, _ := f.send(t, "GET", "/")
	line := w.Header().Get("Set-Cookie")
	c, err := http.ParseSetCookie(line)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "g" || c.Domain != "shop.example" || c.Path != "/app" || c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("Set-Cookie %q parsed as %+v", line, c)
	}
	// The browser sends it back under that name, and the guest returns.
	w2, _ := f.send(t, "GET", "/app", withCookie(&http.Cookie{Name: "g", Value: c.Value}))
	if !strings.HasPrefix(w2.Header().Get("Set-Cookie"), "g=") {
		t.Errorf("returning guest's cookie not re-set under its name: %q", w2.Header().Get("Set-Cookie"))
	}
}

// The handler's context is the parent's, plus the guest: its values, its
// deadline and its cancellation (with the cause) come through, and a
// context derived from it is cancelled with it.
func TestHandlerContextKeepsParent(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	type key struct{}
	deadline := time.Now().Add(time.Hour)
	parent, cancelDeadline := context.WithDeadline(context.WithValue(context.Background(), key{}, "outer"), deadline)
	defer cancelDeadline()
	parent, cancel := context.WithCancelCause(parent)
	cause := errors.New("client went away")
	var checked bool
	h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if anonymous.UserFrom(ctx) == nil {
			t.Fatal("no guest in the handler's context")
		}
		if got := ctx.Value(key{}); got != "outer" {
			t.Errorf("parent's value = %v", got)
		}
		if d, ok := ctx.Deadline(); !ok || !d.Equal(deadline) {
			t.Errorf("Deadline() = %v, %v; want %v", d, ok, deadline)
		}
		// Printed, it names itself, not the headers and token it holds.
		if s := fmt.Sprint(ctx) + fmt.Sprintf("%+v", ctx); strings.Contains(s, "Bearer") || strings.Contains(s, "Max-Age") || strings.Contains(s, defaultCookie) {
			t.Errorf("the context prints what it holds: %s", s)
		}
		derived, stop := context.WithCancel(ctx)
		defer stop()
		cancel(cause)
		for _, c := range []context.Context{ctx, derived} {
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("not cancelled with the parent")
			}
			if !errors.Is(c.Err(), context.Canceled) || context.Cause(c) != cause {
				t.Errorf("Err() = %v, Cause = %v; want Canceled, %v", c.Err(), context.Cause(c), cause)
			}
		}
		checked = true
	}))
	r := httptest.NewRequest("GET", "https://shop.example/", nil).WithContext(parent)
	r.Header.Set("Authorization", "Bearer not-a-token")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if !checked {
		t.Fatal("handler not reached")
	}
}

// The middleware adds its Vary values to those set before it, and what a
// handler does to them, in place or by appending, leaves the next
// response's alone.
func TestVaryKeepsOthers(t *testing.T) {
	f := newFixture(t, anonymous.Options{})
	h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := w.Header()["Vary"]
		v[0] = "Changed"
		w.Header()["Vary"] = append(v, "Accept-Encoding")
	}))
	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "https://shop.example/", nil))
		if got, want := w.Header()["Vary"], []string{"Changed", "Authorization", "Accept-Encoding"}; !slices.Equal(got, want) {
			t.Errorf("Vary %q, want %q", got, want)
		}
		w = httptest.NewRecorder()
		w.Header().Set("Vary", "Origin")
		f.h.ServeHTTP(w, httptest.NewRequest("GET", "https://shop.example/", nil))
		if got, want := w.Header()["Vary"], []string{"Origin", "Cookie", "Authorization"}; !slices.Equal(got, want) {
			t.Errorf("Vary with Origin set before: %q, want %q", got, want)
		}
	}
}

// A Secure guest cookie set over plain HTTP to a host other than loopback
// is dropped by browsers: the middleware says so once, and only then.
func TestPlainHTTPWarning(t *testing.T) {
	const warning = "Secure guest cookie was set over plain HTTP"
	for name, tc := range map[string]struct {
		url, proto string
		insecure   bool
		warns      bool
	}{
		"plain http to another host": {url: "http://shop.example:8080/", warns: true},
		"https":                      {url: "https://shop.example/"},
		"behind a TLS proxy":         {url: "http://shop.example/", proto: "HTTPS"},
		"localhost":                  {url: "http://localhost:8080/"},
		"a .localhost name":          {url: "http://shop.localhost/"},
		"127.0.0.1":                  {url: "http://127.0.0.1:8080/"},
		"[::1]":                      {url: "http://[::1]:8080/"},
		"CookieInsecure":             {url: "http://shop.example/", insecure: true},
	} {
		t.Run(name, func(t *testing.T) {
			opts := anonymous.Options{CookieInsecure: tc.insecure}
			if tc.insecure {
				opts.CookieName = "anonymous_guest"
			}
			f := newFixture(t, opts)
			for range 3 {
				r := httptest.NewRequest("GET", tc.url, nil)
				if tc.proto != "" {
					r.Header.Set("X-Forwarded-Proto", tc.proto)
				}
				f.h.ServeHTTP(httptest.NewRecorder(), r)
			}
			want := 0
			if tc.warns {
				want = 1
			}
			if got := strings.Count(f.logs.String(), warning); got != want {
				t.Errorf("warned %d times after 3 new visitors, want %d: %s", got, want, f.logs)
			}
		})
	}
}
