package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/guestpass/anonymous/examples/shop/app"
	"github.com/guestpass/anonymous/internal/redistest"
)

// defaultCookie is the guest cookie's documented default name.
const defaultCookie = "__Host-anonymous_guest"

const testKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func TestParseConfig(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     func(string) string
		check   func(*config) bool
		wantErr bool
	}{
		{"defaults", nil, env(), func(c *config) bool {
			return c.addr == ":8080" && c.hashKey == nil && !c.insecure && c.redisURL == "" && c.redisPrefix != ""
		}, false},
		{"flag key", []string{"-hash-key", testKey}, env(), func(c *config) bool { return len(c.hashKey) == 32 && c.hashKey[1] == 0x11 }, false},
		{"env key", nil, env("SHOP_HASH_KEY", testKey), func(c *config) bool { return len(c.hashKey) == 32 && c.hashKey[31] == 0xff }, false},
		{"flag beats env", []string{"-hash-key", strings.Repeat("ab", 32)}, env("SHOP_HASH_KEY", testKey), func(c *config) bool { return c.hashKey[31] == 0xab }, false},
		{"all flags", []string{"-addr", "127.0.0.1:9", "-insecure-cookies", "-redis", "redis://x:1/2", "-redis-prefix", "p:"}, env(), func(c *config) bool {
			return c.addr == "127.0.0.1:9" && c.insecure && c.redisURL == "redis://x:1/2" && c.redisPrefix == "p:"
		}, false},
		{"postgres", []string{"-postgres", "postgres://u@h:1/db"}, env(), func(c *config) bool { return c.postgresURL == "postgres://u@h:1/db" && c.redisURL == "" }, false},
		{"redis and postgres", []string{"-redis", "redis://x:1/2", "-postgres", "postgres://u@h:1/db"}, env(), nil, true},
		{"short key", []string{"-hash-key", "abcd"}, env(), nil, true},
		{"not hex", []string{"-hash-key", strings.Repeat("zz", 32)}, env(), nil, true},
		{"bad env key", nil, env("SHOP_HASH_KEY", "secret-but-wrong"), nil, true},
		{"stray argument", []string{"serve"}, env(), nil, true},
		{"unknown flag", []string{"-port", "1"}, env(), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			c, err := parseConfig(tc.args, tc.env, &out)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error, config %+v", c)
				}
				if strings.Contains(err.Error(), "secret-but-wrong") {
					t.Fatalf("the error echoes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

func TestRunServesTheShopUntilCancelled(t *testing.T) {
	// serve waits for the log line that announces the address: the signal
	// that it serves.
	shop := serve(t, "-addr", "127.0.0.1:0")

	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(shop.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `id="greeting">Hello, `) {
		t.Fatalf("GET /: %d\n%s", resp.StatusCode, body)
	}
	var guest *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == defaultCookie {
			guest = c
		}
	}
	if guest == nil || !guest.Secure {
		t.Fatalf("guest cookie %+v: want a Secure one by default", guest)
	}

	shop.stop() // fails the test unless run returns nil soon after
}

func TestOpenStoreRejectsBadRedis(t *testing.T) {
	for _, u := range []string{"not a url", "http://127.0.0.1:6379", "redis://127.0.0.1:1/0"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, closeStore, err := openStore(ctx, &config{redisURL: u})
		cancel()
		if err == nil {
			closeStore()
			t.Errorf("-redis %q: no error", u)
		}
	}
}

// testRedis returns REDIS_URL, a client on it and a random key prefix,
// whose keys are removed at the end. Without a reachable Redis the test
// skips, loudly, unless ANON_REQUIRE_REDIS=1, where it fails.
func testRedis(t *testing.T) (url string, raw *redis.Client, prefix string) {
	raw = redistest.Client(t)
	return redistest.URL(), raw, redistest.Prefix(t, raw)
}

// TestRedisFlagKeepsGuestsInRedis checks that -redis and -redis-prefix put
// the shop's guests and accounts' carts in that Redis, under that prefix.
func TestRedisFlagKeepsGuestsInRedis(t *testing.T) {
	u, raw, prefix := testRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	store, carts, closeStore, err := openStore(ctx, &config{redisURL: u, redisPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	shop, err := app.New(store, app.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Carts: carts})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(shop)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Transport: srv.Client().Transport, Jar: jar, Timeout: 10 * time.Second}
	for range 2 { // the guest is stored when it comes back
		resp, err := client.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var guests, carted []string
	for _, k := range redistest.Keys(t, raw, prefix) {
		if strings.HasPrefix(k, prefix+"cart:") {
			carted = append(carted, k)
		} else {
			guests = append(guests, k)
		}
	}
	if len(guests) == 0 {
		t.Fatalf("no guest under %q in Redis after a returning guest", prefix)
	}
	if !slices.Contains(carted, prefix+"cart:alice") {
		t.Fatalf("alice's seeded cart is not under %q in Redis (cart keys %q)", prefix, carted)
	}
}

// A frozen Redis (it accepts connections and never answers) costs a request
// a fraction of a second with the shop's client options, not go-redis's
// defaults of several seconds.
func TestFrozenRedisFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c) // reads, never answers
		}
	}()
	ro, err := redisOptions("redis://" + ln.Addr().String() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(ro)
	defer client.Close()
	start := time.Now()
	err = client.Get(context.Background(), "k").Err()
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Errorf("GET on a frozen Redis: %v after %v, want an error within 2s", err, took)
	}
}
