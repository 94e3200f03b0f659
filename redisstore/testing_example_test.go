package redisstore_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/redisstore"
	"github.com/redis/go-redis/v9"
)

// This file is the pattern docs/testing.md describes: an application's
// handlers tested behind the middleware, on a real Redis.

// exampleCart is the application's guest data.
type exampleCart struct {
	Items int `json:"items"`
}

// newExampleShop is the application under test: GET / answers "<guest id>
// <items>", POST /add adds an item to the guest's cart.
func newExampleShop(t *testing.T, store anonymous.Store) http.Handler {
	t.Helper()
	guests, err := anonymous.New(store, anonymous.Options{
		// Fixed keys: New logs no random-keys warning, and a cookie stays
		// valid for another Manager on the same store. For tests only.
		Keys: []anonymous.Key{{Hash: []byte("test-only key, 32 bytes long....")}},
		// Every request of the test comes from 127.0.0.1, one client whose
		// budget stops storing guests after 20. Never off in production.
		Budget:   anonymous.Budget{Off: true},
		ErrorLog: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		u := anonymous.UserFrom(r.Context())
		if u == nil {
			http.Error(w, "no guest", http.StatusServiceUnavailable)
			return
		}
		c, err := anonymous.JSONFrom[exampleCart](r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %d", u.ID, c.Items)
	})
	mux.HandleFunc("POST /add", func(w http.ResponseWriter, r *http.Request) {
		c, err := anonymous.UpdateJSON(guests, w, r, func(c *exampleCart) error {
			c.Items++
			return nil
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %d", anonymous.UserFrom(r.Context()).ID, c.Items)
	})
	return guests.Middleware(mux)
}

// testPrefix returns a key prefix of the test's own and removes every key
// under it when the test ends: a shared database is never flushed. It is
// redistest.Prefix for one node, as an application, which cannot import
// internal/redistest, writes it.
func testPrefix(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	prefix := "test:" + rand.Text() + ":" // crypto/rand: no braces, no glob characters
	t.Cleanup(func() {
		// t.Context() is already done when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := rdb.Unlink(ctx, iter.Val()).Err(); err != nil {
				t.Errorf("removing %s: %v", iter.Val(), err)
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("listing the keys under %s: %v", prefix, err)
		}
	})
	return prefix
}

// defaultCookie is the guest cookie's documented default name.
const defaultCookie = "__Host-anonymous_guest"

// TestApplicationTestPattern runs the application's test as a subtest, then
// checks that it left no key in Redis.
func TestApplicationTestPattern(t *testing.T) {
	rdb := redistest.Client(t) // an application's test: redis.NewClient(…)
	var prefix string
	t.Run("Shop", func(t *testing.T) {
		prefix = testPrefix(t, rdb)
		store, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(newExampleShop(t, store))
		t.Cleanup(srv.Close)
		b := browser(t) // an http.Client with a net/http/cookiejar

		first := visit(t, b, srv.URL+"/")
		id, items, _ := strings.Cut(first.body, " ")
		if first.status != http.StatusOK || !first.setCookie || items != "0" {
			t.Fatalf("first visit: %+v, want a guest, its cookie and an empty cart", first)
		}
		// The default cookie is Secure, yet the jar sends it back over
		// http:// because the server is on a loopback address.
		u, _ := url.Parse(srv.URL)
		if !slices.ContainsFunc(b.Jar.Cookies(u), func(c *http.Cookie) bool { return c.Name == defaultCookie }) {
			t.Fatalf("the jar holds no %s cookie for %s", defaultCookie, srv.URL)
		}
		// By default (no PersistOnIssue) the first response wrote nothing.
		if keys := redistest.Keys(t, rdb, prefix); len(keys) != 0 {
			t.Fatalf("keys after the first visit: %q, want none", keys)
		}

		resp, err := b.Post(srv.URL+"/add", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /add: %s", resp.Status)
		}
		if got, want := visit(t, b, srv.URL+"/").body, id+" 1"; got != want {
			t.Fatalf("after adding an item: %q, want %q", got, want)
		}
		if got, want := redistest.Keys(t, rdb, prefix), []string{prefix + "{" + id + "}"}; !slices.Equal(got, want) {
			t.Errorf("keys: %q, want %q", got, want)
		}

		// A restart: a new Manager with the same keys on the same store.
		// Cookies ignore ports, so the jar sends the guest cookie here too.
		restarted := httptest.NewServer(newExampleShop(t, store))
		t.Cleanup(restarted.Close)
		if got, want := visit(t, b, restarted.URL+"/").body, id+" 1"; got != want {
			t.Fatalf("after a restart: %q, want %q", got, want)
		}
		t.Logf("guest %s kept its cart across requests and a new Manager, under prefix %q", id, prefix)
	})
	for _, p := range []string{prefix, "rate:" + prefix} { // the store's keys, the budget's
		if keys := redistest.Keys(t, rdb, p); len(keys) != 0 {
			t.Errorf("left in Redis after the test: %q", keys)
		}
	}
}
