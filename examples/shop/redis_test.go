package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/examples/shop/app"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/redisstore"
)

// running is the shop served by run, as the command serves it.
type running struct {
	base string // http://127.0.0.1:port
	stop func()
}

// serve runs the shop with args until the test stops it (stop waits for
// run to return, and fails the test if it returns an error).
func serve(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs, logw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, func(string) string { return "" }, logw)
		logw.Close()
	}()
	lines := bufio.NewScanner(logs)
	reURL := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)`)
	var base string
	for base == "" && lines.Scan() {
		if m := reURL.FindStringSubmatch(lines.Text()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		cancel()
		t.Fatalf("run never said where it listens (err %v)", <-done)
	}
	go io.Copy(io.Discard, logs) // keep the logger from blocking
	stopped := false
	stop := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run after cancel: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("run did not stop after its context was cancelled")
		}
	}
	t.Cleanup(stop)
	return &running{base: base, stop: stop}
}

// visitor is one browser: a client with its own cookie jar. Its cookies
// are the host's whatever the port, and Go's jar, like browsers, sends
// Secure cookies to 127.0.0.1 over plain HTTP.
type visitor struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newVisitor(t *testing.T, base string) *visitor {
	jar, _ := cookiejar.New(nil)
	return &visitor{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// shopPage is what a page shows, read off its HTML.
type shopPage struct {
	body string
	id   string // the user id in the footer
	kind string // "Guest" or "Signed in"
	cart map[string]int
}

var (
	reUserID   = regexp.MustCompile(`id="user-id">([^<]*)<`)
	reUserKind = regexp.MustCompile(`id="user-kind">([^<]*)<`)
	reCartLine = regexp.MustCompile(`data-product="([^"]+)" data-qty="(\d+)"`)
)

func (v *visitor) do(resp *http.Response, err error) shopPage {
	v.t.Helper()
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		v.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		v.t.Fatalf("%s %s: %d\n%s", resp.Request.Method, resp.Request.URL, resp.StatusCode, b)
	}
	p := shopPage{body: string(b), cart: map[string]int{}}
	if m := reUserID.FindStringSubmatch(p.body); m != nil {
		p.id = m[1]
	}
	if m := reUserKind.FindStringSubmatch(p.body); m != nil {
		p.kind = m[1]
	}
	for _, m := range reCartLine.FindAllStringSubmatch(p.body, -1) {
		n, _ := strconv.Atoi(m[2])
		p.cart[m[1]] = n
	}
	return p
}

func (v *visitor) get(path string) shopPage {
	v.t.Helper()
	return v.do(v.c.Get(v.base + path))
}

// post submits a form as the page's forms do, following the redirect.
func (v *visitor) post(path string, form url.Values) shopPage {
	v.t.Helper()
	return v.do(v.c.PostForm(v.base+path, form))
}

func (v *visitor) add(product string) shopPage {
	v.t.Helper()
	return v.post("/cart/add", url.Values{"product": {product}})
}

func wantCart(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("%s: cart %v, want %v", what, got, want)
	}
}

// guestRecord reads a guest's record from the shop's store.
func guestRecord(t *testing.T, store anonymous.Store, id string) *anonymous.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	guests, err := anonymous.New(store, anonymous.Options{Keys: []anonymous.Key{{Hash: []byte("a key that only reads guests, 32")}}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := guests.Record(ctx, id)
	if err != nil && !errors.Is(err, anonymous.ErrNotFound) {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return rec
}

// TestForgetMeLeavesNothingInRedis checks that Forget me deletes a guest's
// cart with the guest: the guest's record is all that remains of it in
// Redis, as a deleted guest's record that holds no data.
func TestForgetMeLeavesNothingInRedis(t *testing.T) {
	u, raw, prefix := testRedis(t)
	shop := serve(t, "-addr", "127.0.0.1:0", "-redis", u, "-redis-prefix", prefix, "-hash-key", testKey)
	store, err := redisstore.New(raw, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	v := newVisitor(t, shop.base)
	guest := v.get("/").id
	v.add("tea")
	wantCart(t, "after adding", v.add("cactus").cart, map[string]int{"tea": 1, "cactus": 1})
	// Products no account's cart holds, so that finding them anywhere in
	// Redis means the guest's cart is there.
	products := []string{`"tea"`, `"cactus"`}
	holding := func(product string) (keys []string) {
		t.Helper()
		for _, k := range redistest.Keys(t, raw, prefix) {
			val, err := raw.Get(context.Background(), k).Result()
			if err != nil {
				t.Fatalf("GET %s: %v", k, err)
			}
			if strings.Contains(val, product) {
				keys = append(keys, k)
			}
		}
		return keys
	}
	// The scan sees the cart where it is: in the guest's record.
	if keys := holding(products[0]); !slices.Equal(keys, []string{prefix + "{" + guest + "}"}) {
		t.Fatalf("before Forget me the keys holding the cart are %q, want the guest's record alone", keys)
	}

	if p := v.get("/forget"); !strings.Contains(p.body, `id="forget-confirm"`) {
		t.Fatalf("no Forget me confirmation:\n%s", p.body)
	}
	p := v.post("/forget", url.Values{"guest": {guest}})
	if p.id == guest || p.kind != "Guest" || len(p.cart) != 0 {
		t.Fatalf("after Forget me the visitor is %q %s with cart %v, want a new guest with none", p.kind, p.id, p.cart)
	}

	if rec := guestRecord(t, store, guest); rec != nil && (!rec.Deleted || len(rec.Data) > 0 || rec.LinkedTo != "") {
		t.Fatalf("the forgotten guest's record is %+v, want none or a deleted one without data", rec)
	}
	for _, k := range redistest.Keys(t, raw, prefix) {
		if strings.Contains(k, guest) && k != prefix+"{"+guest+"}" {
			t.Errorf("key %s is about the forgotten guest", k)
		}
	}
	for _, id := range products {
		if keys := holding(id); len(keys) > 0 {
			t.Errorf("after Forget me the keys %q still hold %s from the guest's cart", keys, id)
		}
	}
}

// TestRestartOnRedisKeepsCarts: restartKeepsCarts on one Redis, where an
// account's cart is a key of its own.
func TestRestartOnRedisKeepsCarts(t *testing.T) {
	u, raw, prefix := testRedis(t)
	store, err := redisstore.New(raw, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	restartKeepsCarts(t, store, func() app.AccountCart {
		t.Helper()
		v, err := raw.Get(context.Background(), app.NewRedisCarts(raw, prefix).Key("alice")).Result()
		if err != nil {
			t.Fatalf("alice's cart in Redis: %v", err)
		}
		var c app.AccountCart
		if err := json.Unmarshal([]byte(v), &c); err != nil {
			t.Fatalf("alice's cart in Redis is %q: %v", v, err)
		}
		return c
	}, "-redis", u, "-redis-prefix", prefix, "-hash-key", testKey)
}

// restartKeepsCarts stops and starts the shop with args, which name one
// store and one hash key: a guest's cart survives the restart, moves into
// the account at login once, and the account's cart survives another
// restart. store reads the shop's guests; accountCart reads alice's cart
// where the shop keeps it.
func restartKeepsCarts(t *testing.T, store anonymous.Store, accountCart func() app.AccountCart, args ...string) {
	shop := serve(t, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	addr := strings.TrimPrefix(shop.base, "http://")
	restart := func() {
		t.Helper()
		shop.stop()
		shop = serve(t, append([]string{"-addr", addr}, args...)...)
	}
	if c := accountCart(); !maps.Equal(c.Items, map[string]int{"mug": 1}) {
		t.Fatalf("alice's seeded cart is %v, want one mug", c.Items)
	}

	v := newVisitor(t, shop.base)
	guest := v.get("/").id
	v.add("tea")
	v.add("mug")
	wantCart(t, "the guest's", v.add("tea").cart, map[string]int{"tea": 2, "mug": 1})

	restart()
	p := v.get("/")
	if p.id != guest || p.kind != "Guest" {
		t.Fatalf("after a restart the visitor is %q %s, want guest %s", p.kind, p.id, guest)
	}
	wantCart(t, "the guest's, after a restart", p.cart, map[string]int{"tea": 2, "mug": 1})

	// Signing in merges the guest's cart into alice's, once.
	want := map[string]int{"mug": 2, "tea": 2}
	p = v.post("/login", url.Values{"username": {"alice"}, "password": {"wonderland"}})
	if p.id != "alice" || p.kind != "Signed in" {
		t.Fatalf("after signing in the visitor is %q %s, want alice", p.kind, p.id)
	}
	wantCart(t, "alice's, after signing in", p.cart, want)
	if !strings.Contains(p.body, "We moved 3 items from your guest cart") {
		t.Fatalf("no notice of the moved cart:\n%s", p.body)
	}
	c := accountCart()
	wantCart(t, "alice's in the store", c.Items, want)
	if !slices.Equal(c.Merged, []string{guest}) || c.Notice != "" {
		t.Fatalf("alice's stored cart records merges %q and notice %q, want the guest's once and the notice shown", c.Merged, c.Notice)
	}
	if rec := guestRecord(t, store, guest); rec == nil || rec.LinkedTo != "alice" || len(rec.Data) > 0 {
		t.Fatalf("the linked guest's record is %+v, want one linked to alice, without data", rec)
	}
	wantCart(t, "alice's, on the next page", v.get("/").cart, want)

	// Another restart: alice is still signed in, her cart is still merged
	// once (the seed did not come back), and the notice is not repeated.
	restart()
	p = v.get("/")
	if p.id != "alice" {
		t.Fatalf("after another restart the visitor is %q %s, want alice", p.kind, p.id)
	}
	wantCart(t, "alice's, after another restart", p.cart, want)
	if strings.Contains(p.body, `id="notice"`) {
		t.Fatalf("the moved-cart notice is shown again after a restart:\n%s", p.body)
	}
	wantCart(t, "alice's in the store, after another restart", accountCart().Items, want)
}
