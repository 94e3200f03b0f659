package anonymous_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// benchHandler reads the guest's id, as an application handler would.
var benchHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if u := anonymous.UserFrom(r.Context()); u != nil {
		w.Header().Set("X-Guest", u.ID)
	}
})

// benchManager is the middleware of newBenchManager, around benchHandler.
func benchManager(b *testing.B, persist bool) http.Handler {
	// Every request comes from one address: without turning the budget off,
	// it would keep all but the first 20 new guests from being stored.
	return newBenchManager(b, persist, anonymous.Budget{Off: true}).Middleware(benchHandler)
}

// newBenchManager is a Manager on a memstore without a cap (b.N guests may
// be stored), with fixed keys and a silent log.
func newBenchManager(b *testing.B, persist bool, budget anonymous.Budget) *anonymous.Manager {
	store := newMemstore(b, memstore.Options{MaxBytes: -1})
	m, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: hashKey1}}, PersistOnIssue: persist, Budget: budget,
		ErrorLog: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// discard is a ResponseWriter that keeps only headers, so the benchmark
// measures the middleware rather than a recorder's buffers.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkReturningGuest: a stored guest's request, cookie attached.
func BenchmarkReturningGuest(b *testing.B) {
	h := benchManager(b, onIssue)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	cookie := w.Result().Cookies()[0]
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(cookie)
		d := &discard{h: http.Header{}}
		for pb.Next() {
			clear(d.h)
			h.ServeHTTP(d, r)
			if d.h.Get("X-Guest") == "" {
				b.Fatal("no guest")
			}
		}
	})
}

// BenchmarkNewVisitor: no cookie; a guest is minted and its cookie set.
func BenchmarkNewVisitor(b *testing.B) {
	for _, bc := range []struct {
		name    string
		persist bool
	}{{"PersistOnReturn", onReturn}, {"PersistOnIssue", onIssue}} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchManager(b, bc.persist)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest("GET", "/", nil)
				d := &discard{h: http.Header{}}
				for pb.Next() {
					clear(d.h)
					h.ServeHTTP(d, r)
					if d.h.Get("Set-Cookie") == "" {
						b.Fatal("no cookie")
					}
				}
			})
		})
	}
}

// firstVisitCookies returns n first-visit cookies of h (whose guests are
// stored on their return), each a new visitor's.
func firstVisitCookies(b *testing.B, h http.Handler, n int) []*http.Cookie {
	out := make([]*http.Cookie, n)
	for i := range out {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		out[i] = w.Result().Cookies()[0]
	}
	return out
}

// BenchmarkFirstReturn: a first-visit cookie comes back; its guest is
// stored under the token derived from the cookie's, and the cookie re-set.
func BenchmarkFirstReturn(b *testing.B) {
	h := benchManager(b, onReturn)
	cookies := firstVisitCookies(b, h, b.N)
	r := httptest.NewRequest("GET", "/", nil)
	d := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for _, c := range cookies {
		clear(d.h)
		r.Header["Cookie"] = []string{c.Name + "=" + c.Value}
		h.ServeHTTP(d, r)
		if d.h.Get("X-Guest") == "" || d.h.Get("Set-Cookie") == "" {
			b.Fatal("the guest was not stored")
		}
	}
}

// BenchmarkFirstReturnSibling: a sibling of the request that stored a
// first-visit cookie's guest, within the grace: the store refuses the
// create, the stored guest is read and its token derived.
func BenchmarkFirstReturnSibling(b *testing.B) {
	h := benchManager(b, onReturn)
	c := firstVisitCookies(b, h, 1)[0]
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(c)
	h.ServeHTTP(httptest.NewRecorder(), r) // stores the guest
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(c)
		d := &discard{h: http.Header{}}
		for pb.Next() {
			clear(d.h)
			h.ServeHTTP(d, r)
			if d.h.Get("X-Guest") == "" || d.h.Get("Set-Cookie") == "" {
				b.Fatal("the sibling was not served the guest") // or the 10 s grace ran out
			}
		}
	})
}

// refusing is a budget limiter that never allows a guest to be stored.
type refusing struct{}

func (refusing) Take(context.Context, []anonymous.Charge) (time.Duration, error) {
	return time.Minute, nil
}

func (refusing) Refund(context.Context, []anonymous.Charge) error { return nil }

// BenchmarkUpdateData: a returning visitor replaces its cart (200 bytes of
// data), stored, or held in its first-visit cookie because the budget
// keeps it out (the cookie re-set with the data).
func BenchmarkUpdateData(b *testing.B) {
	cart := bytes.Repeat([]byte("c"), 200)
	for _, bc := range []struct {
		name   string
		budget anonymous.Budget
		stored bool
	}{{"stored", anonymous.Budget{Off: true}, true}, {"held-in-cookie", anonymous.Budget{Limiter: refusing{}}, false}} {
		b.Run(bc.name, func(b *testing.B) {
			m := newBenchManager(b, onReturn, bc.budget)
			h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := m.UpdateData(w, r, func([]byte) ([]byte, error) { return cart, nil }); err != nil {
					b.Error(err)
				}
			}))
			// Each goroutine has a visitor of its own: no update conflicts.
			cookies := make(chan string, runtime.GOMAXPROCS(0))
			for range cap(cookies) {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("POST", "/", nil))
				c := w.Result().Cookies()[0]
				if (c.MaxAge != 3600) != bc.stored {
					b.Fatalf("the visitor's cookie %+v: stored is not %v", c, bc.stored)
				}
				cookies <- c.Name + "=" + c.Value
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest("POST", "/", nil)
				r.Header.Set("Cookie", <-cookies)
				d := &discard{h: http.Header{}}
				for pb.Next() {
					clear(d.h)
					h.ServeHTTP(d, r)
				}
			})
		})
	}
}
