package redisstore_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/redisstore"
)

// The two benchmarks below run in the same process against the same Redis
// and compare a returning guest's request through the middleware with the
// floor under it: a handler that does one raw GET of a key of the same size.

// BenchmarkReturningGuest serves a request carrying a stored guest's cookie
// through the middleware to a handler that reads anonymous.UserFrom.
func BenchmarkReturningGuest(b *testing.B) {
	c := redistest.Client(b)
	s, err := redisstore.New(c, redisstore.Options{Prefix: redistest.Prefix(b, c)})
	if err != nil {
		b.Fatal(err)
	}
	m := manager(b, s, anonymous.Options{PersistOnIssue: true})
	var missed atomic.Int64
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if anonymous.UserFrom(r.Context()) == nil {
			missed.Add(1)
		}
		w.Write([]byte{'k'})
	}))

	// The first request issues and stores the guest; keep its cookie.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		b.Fatalf("the first request set %d cookies, want 1", len(cookies))
	}

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(cookies[0])
		for pb.Next() {
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
	})
	b.StopTimer()
	if n := missed.Load(); n > 0 {
		b.Fatalf("%d requests had no guest", n)
	}
}

// BenchmarkRawGET serves a request with a handler that does one GET of a
// guest's key on the same Redis, with the same client, and writes a byte.
func BenchmarkRawGET(b *testing.B) {
	c := redistest.Client(b)
	prefix := redistest.Prefix(b, c)
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	m := manager(b, s, anonymous.Options{PersistOnIssue: true})
	var id string
	m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id = anonymous.UserFrom(r.Context()).ID
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	key := prefix + "{" + id + "}"

	var failed atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := c.Get(r.Context(), key).Result(); err != nil {
			failed.Add(1)
		}
		w.Write([]byte{'k'})
	})

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for pb.Next() {
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
	})
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d GETs failed", n)
	}
}

// BenchmarkStoreGet serves a request with a handler that loads a guest's
// entry with Store.Get and writes a byte: BenchmarkRawGET plus the store's
// own work (the key, the frame), without the middleware's cookie handling
// and the record's decoding.
func BenchmarkStoreGet(b *testing.B) {
	c := redistest.Client(b)
	s, err := redisstore.New(c, redisstore.Options{Prefix: redistest.Prefix(b, c)})
	if err != nil {
		b.Fatal(err)
	}
	m := manager(b, s, anonymous.Options{PersistOnIssue: true})
	var id string
	m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id = anonymous.UserFrom(r.Context()).ID
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))

	var failed atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.Get(r.Context(), id); err != nil {
			failed.Add(1)
		}
		w.Write([]byte{'k'})
	})

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for pb.Next() {
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
	})
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d Gets failed", n)
	}
}
