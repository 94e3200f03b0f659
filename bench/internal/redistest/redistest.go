// Package redistest connects the benchmarks and their tests to the real
// Redis at REDIS_URL, gives each user its own key prefix, and removes that
// prefix's keys afterwards. It never flushes a database.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultURL is used when REDIS_URL is unset.
const DefaultURL = "redis://127.0.0.1:6379/0"

// URL is REDIS_URL, or DefaultURL.
func URL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	probeOnce sync.Once
	probeErr  error
)

// Client returns a new client on URL, closed when tb ends. When Redis cannot
// be reached it skips tb with a loud message, or fails it when
// ANON_REQUIRE_REDIS=1, so CI never counts a skipped Redis contender as run.
// Each option adjusts the client's options first. Safe for concurrent use.
func Client(tb testing.TB, options ...func(*redis.Options)) *redis.Client {
	tb.Helper()
	opts, err := redis.ParseURL(URL())
	if err != nil {
		tb.Fatalf("REDIS_URL %q: %v", URL(), err)
	}
	probeOnce.Do(func() {
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		probeErr = c.Ping(ctx).Err()
	})
	if probeErr != nil {
		msg := "REDIS IS UNREACHABLE at " + URL() + ": " + probeErr.Error() + " — Redis contenders are NOT measured"
		if os.Getenv("ANON_REQUIRE_REDIS") == "1" {
			tb.Fatal(msg + " (ANON_REQUIRE_REDIS=1)")
		}
		tb.Skip(msg)
	}
	for _, o := range options {
		o(opts)
	}
	c := redis.NewClient(opts)
	tb.Cleanup(func() { c.Close() })
	return c
}

// Prefix returns a fresh random key prefix, "bench:<hex>:", and removes
// every key under it when tb ends (the cleanup runs before the client
// from Client is closed if Prefix is called after Client).
func Prefix(tb testing.TB, c *redis.Client) string {
	tb.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	p := "bench:" + hex.EncodeToString(b) + ":"
	tb.Cleanup(func() {
		if err := DeletePrefix(context.Background(), c, p); err != nil {
			tb.Errorf("removing keys under %s: %v", p, err)
		}
	})
	return p
}

// DeletePrefix removes every key starting with prefix, with SCAN and
// UNLINK, so it never blocks Redis for long.
func DeletePrefix(ctx context.Context, c *redis.Client, prefix string) error {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// Keys lists the keys starting with prefix, with SCAN.
func Keys(ctx context.Context, c *redis.Client, prefix string) ([]string, error) {
	var all []string
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		all = append(all, iter.Val())
	}
	return all, iter.Err()
}
