// Package redistest connects tests to a real Redis: a single node named by
// REDIS_URL (default redis://127.0.0.1:6379/0) and a Cluster named by
// REDIS_CLUSTER_ADDRS (comma-separated host:port of its masters, as printed
// by scripts/redis-cluster.sh start).
//
// When the server is not there, tests skip with a loud message, unless
// ANON_REQUIRE_REDIS=1, which turns the skip into a failure (CI sets it).
// Tests never flush a database: each takes its own random key Prefix, and
// the keys under it are removed when the test ends.
//
// Failover tests, which run only with ANON_FAILOVER=1, start a replicated
// topology of their own instead (StartCluster, StartSentinel) and kill,
// cut off and watch its servers.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultURL is the server used when REDIS_URL is not set.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Required reports whether ANON_REQUIRE_REDIS=1, under which a missing
// server fails the test instead of skipping it.
func Required() bool { return os.Getenv("ANON_REQUIRE_REDIS") == "1" }

// URL returns REDIS_URL, or DefaultURL when it is not set.
func URL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var warned sync.Map // what was already shouted about, once per process

// unavailable skips t (or fails it under ANON_REQUIRE_REDIS=1), and prints
// the reason on stderr once, so that it shows even without -v.
func unavailable(t testing.TB, what, hint string, err error) {
	t.Helper()
	msg := fmt.Sprintf("redistest: %s is not available (%v); %s", what, err, hint)
	if Required() {
		t.Fatalf("%s; FAILING because ANON_REQUIRE_REDIS=1", msg)
	}
	if _, seen := warned.LoadOrStore(what, true); !seen {
		fmt.Fprintf(os.Stderr, "\n*** %s; SKIPPING the tests that need it ***\n\n", msg)
	}
	t.Skipf("SKIPPED: %s", msg)
}

// reachable remembers, per server, whether it answered its first PING, so
// that a missing server costs one timeout per process, not one per test.
var reachable sync.Map // string → *probe

type probe struct {
	once sync.Once
	err  error
}

func ping(key string, fn func() error) error {
	p, _ := reachable.LoadOrStore(key, &probe{})
	pr := p.(*probe)
	pr.once.Do(func() { pr.err = fn() })
	return pr.err
}

// Options returns the parsed REDIS_URL, for tests that build their own
// client (say, through a proxy). It does not check that the server answers.
func Options(t testing.TB) *redis.Options {
	t.Helper()
	opt, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("redistest: REDIS_URL %q: %v", URL(), err)
	}
	return opt
}

// Client returns a client of the single node at REDIS_URL, closed when the
// test ends, or skips (fails under ANON_REQUIRE_REDIS=1) when the server
// does not answer a PING within a second.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	opt := Options(t)
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	err := ping(URL(), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	})
	if err != nil {
		unavailable(t, "Redis at "+URL(), "start one or set REDIS_URL", err)
	}
	return c
}

// ClusterAddrs returns the masters listed in REDIS_CLUSTER_ADDRS, nil when
// it is not set.
func ClusterAddrs() []string {
	v := strings.TrimSpace(os.Getenv("REDIS_CLUSTER_ADDRS"))
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// ClusterClient returns a client of the Cluster at REDIS_CLUSTER_ADDRS,
// closed when the test ends, or skips (fails under ANON_REQUIRE_REDIS=1)
// when the variable is unset or the Cluster is not in state ok.
func ClusterClient(t testing.TB) *redis.ClusterClient {
	t.Helper()
	addrs := ClusterAddrs()
	if addrs == nil {
		unavailable(t, "a Redis Cluster", "start one with `a=$(scripts/redis-cluster.sh start) && export \"$a\"`", fmt.Errorf("REDIS_CLUSTER_ADDRS is not set"))
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	err := ping(strings.Join(addrs, ","), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && !strings.Contains(info, "cluster_state:ok") {
			err = fmt.Errorf("cluster_state is not ok")
		}
		return err
	})
	if err != nil {
		unavailable(t, "the Redis Cluster at "+strings.Join(addrs, ","), "check scripts/redis-cluster.sh", err)
	}
	return c
}

// Prefix returns a fresh random key prefix, such as "t:5f1c0a9e2b7d4c31:",
// and removes every key under it from c when the test ends. It has no
// braces, so it leaves keys' hash tags alone.
func Prefix(t testing.TB, c redis.UniversalClient) string {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	p := "t:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := eachMaster(ctx, c, func(ctx context.Context, n *redis.Client) error {
			iter := n.Scan(ctx, 0, p+"*", 1000).Iterator()
			for iter.Next(ctx) {
				if err := n.Unlink(ctx, iter.Val()).Err(); err != nil {
					return err
				}
			}
			return iter.Err()
		})
		if err != nil {
			t.Logf("redistest: removing keys under %q: %v", p, err)
		}
	})
	return p
}

// Keys returns the keys under prefix, read from every master of c.
func Keys(t testing.TB, c redis.UniversalClient, prefix string) []string {
	t.Helper()
	var (
		mu   sync.Mutex
		keys []string
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := eachMaster(ctx, c, func(ctx context.Context, n *redis.Client) error {
		ks, err := MasterKeys(ctx, n, prefix)
		mu.Lock()
		keys = append(keys, ks...)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatalf("redistest: listing keys under %q: %v", prefix, err)
	}
	return keys
}

// MasterKeys returns the keys under prefix held by the one server n.
func MasterKeys(ctx context.Context, n *redis.Client, prefix string) ([]string, error) {
	var keys []string
	iter := n.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// eachMaster calls fn with every master of a Cluster, or with c itself.
func eachMaster(ctx context.Context, c redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("redistest: unsupported client %T", c)
}

// Private starts a redis-server of the test's own on a free loopback port,
// without persistence, and returns a client of it; both end with the test.
// It is for measurements that other tests' keys would disturb. Without a
// redis-server binary it skips (fails under ANON_REQUIRE_REDIS=1).
func Private(t testing.TB) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server", "install it (Debian: redis-server)", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: starting redis-server: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	t.Cleanup(func() { c.Close() })
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if err := c.Ping(context.Background()).Err(); err == nil {
			return c
		} else if time.Since(start) > 5*time.Second {
			t.Fatalf("redistest: private redis-server on port %d: %v", port, err)
		}
	}
}
