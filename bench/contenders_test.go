package bench_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/gorilla/sessions"
	"github.com/oklog/ulid/v2"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/bench/gorillaredis"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/redisstore"
)

// Every contender signs (where it signs) with the same 32-byte HMAC key and
// no encryption, and keeps sessions for an hour: long enough that no
// benchmark ever refreshes one, short enough that keys left by an
// interrupted run vanish by themselves.
var (
	hashKey  = []byte("bench-hmac-key-32-bytes-long-ok!")
	lifetime = time.Hour
	quiet    = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// rawValue is what RawGET reads and writes: about the size of a guest's
// record in redisstore, so the raw baseline moves as many bytes.
var rawValue = strings.Repeat("v", 160)

// contender is one way of giving a visitor an id. build returns two handlers
// on one shared state: returning reads the id of a visitor that already has
// one (it must not mint one), fresh gives a cookie-less visitor a new id and
// sets a cookie. Both report the id they saw with report.
type contender struct {
	name  string
	build func(tb testing.TB) (returning, fresh http.Handler)
}

// defaultCookie is the guest cookie's documented default name.
const defaultCookie = "__Host-anonymous_guest"

// onReturn and onIssue name Options.PersistOnIssue's two values.
const onReturn, onIssue = false, true

var contenders = []contender{
	{"bare", buildBare},
	{"rawget", buildRawGET},
	{"anonymous-memstore-onreturn", anonymousMem(onReturn)},
	{"anonymous-memstore-onissue", anonymousMem(onIssue)},
	{"anonymous-redisstore-onreturn", anonymousRedis(onReturn)},
	{"anonymous-redisstore-onissue", anonymousRedis(onIssue)},
	{"scs-memstore", buildSCSMem},
	{"scs-goredisstore", buildSCSRedis},
	{"gorilla-cookiestore", buildGorillaCookie},
	{"gorilla-redisstore", buildGorillaRedis},
}

// sinkKey is the context key of the *string a benchmark reads the visitor's
// id from: every contender's handler reports through it, without
// allocating, whatever the middleware does to the ResponseWriter.
type sinkKey struct{}

func report(r *http.Request, id string) {
	if p, _ := r.Context().Value(sinkKey{}).(*string); p != nil {
		*p = id
	}
}

// newID mints an id the way package anonymous does (a ULID with entropy
// from crypto/rand), for the contenders that leave minting to the handler.
func newID() string {
	return ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String()
}

// headerWriter is the ResponseWriter every contender writes to: it keeps
// headers and drops the body, so no recorder's buffering is measured.
type headerWriter struct{ h http.Header }

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *headerWriter) WriteHeader(int)             {}

// bare: no library; the id is a plain cookie.
func buildBare(testing.TB) (http.Handler, http.Handler) {
	returning := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("id"); err == nil {
			report(r, c.Value)
		}
	})
	fresh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := newID()
		setPlainCookie(w, id)
		report(r, id)
	})
	return returning, fresh
}

func setPlainCookie(w http.ResponseWriter, id string) {
	http.SetCookie(w, &http.Cookie{
		Name: "id", Value: id, Path: "/", MaxAge: int(lifetime / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// rawget: bare, plus one raw Redis command: a GET of a fixed key for a
// returning visitor, a SET of the new id's key for a new one. It is the
// floor for anything that keeps sessions in Redis.
func buildRawGET(tb testing.TB) (http.Handler, http.Handler) {
	c := redistest.Client(tb)
	prefix := redistest.Prefix(tb, c)
	fixed := prefix + "fixed"
	if err := c.Set(context.Background(), fixed, rawValue, lifetime).Err(); err != nil {
		tb.Fatal(err)
	}
	returning := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie("id")
		if err != nil {
			return
		}
		if v, err := c.Get(r.Context(), fixed).Result(); err == nil && len(v) == len(rawValue) {
			report(r, ck.Value)
		}
	})
	fresh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := newID()
		if err := c.Set(r.Context(), prefix+id, rawValue, lifetime).Err(); err != nil {
			return
		}
		setPlainCookie(w, id)
		report(r, id)
	})
	return returning, fresh
}

// readGuest is the application handler behind package anonymous.
var readGuest = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if u := anonymous.UserFrom(r.Context()); u != nil {
		report(r, u.ID)
	}
})

// noBudget turns off the per-client budget of stored guests in the
// comparison: a benchmark's requests all come from one address, whose
// default budget (a burst of 20) would run out at once, after which new
// guests are no longer stored and PersistOnIssue would measure the wrong
// path; and no other contender has such a budget. Its cost is measured on
// its own.
var noBudget = anonymous.Budget{Off: true}

func anonymousHandler(tb testing.TB, store anonymous.Store, p bool) (http.Handler, http.Handler) {
	m, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: hashKey}}, PersistOnIssue: p, Lifetime: lifetime, ErrorLog: quiet,
		Budget: noBudget,
	})
	if err != nil {
		tb.Fatal(err)
	}
	h := m.Middleware(readGuest)
	return h, h // the middleware itself tells new visitors from returning ones
}

func anonymousMem(p bool) func(testing.TB) (http.Handler, http.Handler) {
	return func(tb testing.TB) (http.Handler, http.Handler) {
		s := newMemstore(tb)
		return anonymousHandler(tb, s, p)
	}
}

// newMemstore returns a memstore without a cap on its guests, closed when
// the test ends: a benchmark of new guests may store more than the default
// cap (64 MiB), past which Create fails and new guests are not stored.
func newMemstore(tb testing.TB) *memstore.Store {
	s, err := memstore.New(memstore.Options{MaxBytes: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func anonymousRedis(p bool) func(testing.TB) (http.Handler, http.Handler) {
	return func(tb testing.TB) (http.Handler, http.Handler) {
		c := redistest.Client(tb)
		s, err := redisstore.New(c, redisstore.Options{Prefix: redistest.Prefix(tb, c)})
		if err != nil {
			tb.Fatal(err)
		}
		return anonymousHandler(tb, s, p)
	}
}

// scsHandlers wraps scs's LoadAndSave around a handler that reads the id
// from the session, or for a new visitor puts a fresh one in it (which makes
// scs commit the session and set its cookie).
func scsHandlers(sm *scs.SessionManager) (http.Handler, http.Handler) {
	sm.Lifetime = lifetime
	sm.Cookie.Secure = true
	sm.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, "session error", http.StatusInternalServerError)
	}
	returning := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		report(r, sm.GetString(r.Context(), "id"))
	}))
	fresh := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := newID()
		sm.Put(r.Context(), "id", id)
		report(r, id)
	}))
	return returning, fresh
}

func buildSCSMem(tb testing.TB) (http.Handler, http.Handler) {
	// No sweeper goroutine: StopCleanup races with its start (the race
	// detector says so), and a once-a-minute sweep costs a request nothing.
	s := scsmem.NewWithCleanupInterval(0)
	sm := scs.New()
	sm.Store = s
	return scsHandlers(sm)
}

func buildSCSRedis(tb testing.TB) (http.Handler, http.Handler) {
	c := redistest.Client(tb)
	sm := scs.New()
	sm.Store = goredisstore.NewWithPrefix(c, redistest.Prefix(tb, c))
	return scsHandlers(sm)
}

// gorillaHandlers use the store's New and Save directly rather than Get and
// the per-request registry: Get stores the registry by overwriting *r, which
// a benchmark that reuses its request cannot allow, and skipping it only
// spares gorilla work.
func gorillaHandlers(store sessions.Store) (http.Handler, http.Handler) {
	const name = "gsid"
	returning := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := store.New(r, name)
		if err != nil || s.IsNew {
			return
		}
		id, _ := s.Values["id"].(string)
		report(r, id)
	})
	fresh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := store.New(r, name)
		id := newID()
		s.Values["id"] = id
		if err := store.Save(r, w, s); err != nil {
			return
		}
		report(r, id)
	})
	return returning, fresh
}

func buildGorillaCookie(testing.TB) (http.Handler, http.Handler) {
	s := sessions.NewCookieStore(hashKey)
	s.Options.Secure, s.Options.HttpOnly, s.Options.SameSite = true, true, http.SameSiteLaxMode
	s.MaxAge(int(lifetime / time.Second))
	return gorillaHandlers(s)
}

func buildGorillaRedis(tb testing.TB) (http.Handler, http.Handler) {
	c := redistest.Client(tb)
	s, err := gorillaredis.New(c, redistest.Prefix(tb, c), hashKey)
	if err != nil {
		tb.Fatal(err)
	}
	s.Options.MaxAge = int(lifetime / time.Second)
	return gorillaHandlers(s)
}

// request returns a GET / carrying cookieHeader (if any) and reporting the
// visitor's id into *id.
func request(cookieHeader string, id *string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	if cookieHeader != "" {
		r.Header.Set("Cookie", cookieHeader)
	}
	return r.WithContext(context.WithValue(r.Context(), sinkKey{}, id))
}

// cookieHeader turns a response's Set-Cookie lines into the Cookie header a
// browser would send back, "" when there are none.
func cookieHeader(h http.Header) string {
	var pairs []string
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.MaxAge >= 0 && c.Value != "" {
			pairs = append(pairs, c.Name+"="+c.Value)
		}
	}
	return strings.Join(pairs, "; ")
}

// settle gives a visitor its id with fresh, then sends its cookie back to
// returning until no more cookie comes back (package anonymous re-sets it
// once under PersistOnReturn, when it stores the guest), and returns the
// Cookie header of a settled returning visitor.
func settle(tb testing.TB, returning, fresh http.Handler) string {
	tb.Helper()
	var id string
	w := &headerWriter{h: http.Header{}}
	fresh.ServeHTTP(w, request("", &id))
	ck := cookieHeader(w.h)
	if id == "" || ck == "" {
		tb.Fatalf("new visitor: id %q, cookie %q; want both", id, ck)
	}
	for range 3 {
		var got string
		w := &headerWriter{h: http.Header{}}
		returning.ServeHTTP(w, request(ck, &got))
		if got != id {
			tb.Fatalf("returning visitor read id %q, want %q", got, id)
		}
		next := cookieHeader(w.h)
		if next == "" {
			return ck
		}
		ck = next
	}
	tb.Fatal("the cookie never settled: every returning request sets a new one")
	return ""
}

// TestContenders runs each contender once as a new and as a returning
// visitor, so a broken contender fails here rather than skewing a
// benchmark.
func TestContenders(t *testing.T) {
	for _, c := range contenders {
		t.Run(c.name, func(t *testing.T) {
			returning, fresh := c.build(t)
			ck := settle(t, returning, fresh)

			var id string
			w := &headerWriter{h: http.Header{}}
			returning.ServeHTTP(w, request(ck, &id))
			if id == "" || w.h.Get("Set-Cookie") != "" {
				t.Fatalf("returning: id %q, Set-Cookie %q; want an id and no cookie", id, w.h.Get("Set-Cookie"))
			}

			var id1, id2 string
			w1, w2 := &headerWriter{h: http.Header{}}, &headerWriter{h: http.Header{}}
			fresh.ServeHTTP(w1, request("", &id1))
			fresh.ServeHTTP(w2, request("", &id2))
			if id1 == "" || id1 == id2 || w1.h.Get("Set-Cookie") == "" {
				t.Fatalf("new visitors got ids %q and %q, cookie %q; want two distinct ids and a cookie", id1, id2, w1.h.Get("Set-Cookie"))
			}

			// A forged cookie never yields the settled visitor's id.
			var forged string
			returning.ServeHTTP(&headerWriter{h: http.Header{}}, request(tamper(ck), &forged))
			if forged == id {
				t.Fatalf("a tampered cookie read the visitor's id %q", id)
			}
		})
	}
}

// tamper changes one character of the first cookie's value.
func tamper(cookieHeader string) string {
	b := []byte(cookieHeader)
	start := strings.IndexByte(cookieHeader, '=') + 1
	end := strings.IndexByte(cookieHeader, ';')
	if end < 0 {
		end = len(b)
	}
	i := start + (end-start)/2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
