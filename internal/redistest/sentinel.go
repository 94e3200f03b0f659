package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a master with two replicas watched by three Sentinels, of one
// test's own.
type Sentinel struct {
	// Addrs are the Sentinels.
	Addrs []string
	// Master is the name the Sentinels know the master by.
	Master string
	// Nodes are the data nodes, the master first, as started.
	Nodes []string
}

// StartSentinel starts a Sentinel setup (scripts/redis-sentinel.sh start)
// on free loopback ports from base upward, and stops it when the test ends.
func StartSentinel(t testing.TB, base int) *Sentinel {
	t.Helper()
	vars := startScript(t, "redis-sentinel.sh", "REDIS_SENTINEL_STATE", "REDIS_SENTINEL_BASE_PORT", base)
	s := &Sentinel{
		Addrs:  strings.Split(vars["REDIS_SENTINEL_ADDRS"], ","),
		Master: vars["REDIS_SENTINEL_MASTER"],
		Nodes:  strings.Split(vars["REDIS_SENTINEL_NODES"], ","),
	}
	if len(s.Addrs) != 3 || s.Master == "" || len(s.Nodes) != 3 {
		t.Fatalf("redistest: redis-sentinel.sh printed %q", vars)
	}
	return s
}

// MasterAddr asks the Sentinels which node is the master; it fails unless
// they all answer, and alike.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var addr string
	for _, a := range s.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: a, DialTimeout: time.Second, ReadTimeout: time.Second})
		r, err := c.GetMasterAddrByName(ctx, s.Master).Result()
		c.Close()
		if err != nil {
			return "", fmt.Errorf("sentinel %s: %w", a, err)
		}
		got := net.JoinHostPort(r[0], r[1])
		if addr != "" && got != addr {
			return "", fmt.Errorf("sentinels disagree: %s and %s", addr, got)
		}
		addr = got
	}
	return addr, nil
}

// DownAfter returns down-after-milliseconds, how long the Sentinels wait
// before they take a silent master for dead, as the first Sentinel has it.
func (s *Sentinel) DownAfter(ctx context.Context) (time.Duration, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addrs[0], DialTimeout: time.Second})
	defer c.Close()
	m, err := c.Master(ctx, s.Master).Result()
	if err != nil {
		return 0, err
	}
	ms, err := strconv.Atoi(m["down-after-milliseconds"])
	return time.Duration(ms) * time.Millisecond, err
}

// SetDownAfter sets down-after-milliseconds on every Sentinel: a test
// lengthens it while it wants no failover, since a loaded machine can
// stall a master past a short one.
func (s *Sentinel) SetDownAfter(ctx context.Context, d time.Duration) error {
	for _, a := range s.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: a, DialTimeout: time.Second})
		err := c.Set(ctx, s.Master, "down-after-milliseconds", strconv.FormatInt(d.Milliseconds(), 10)).Err()
		c.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", a, err)
		}
	}
	return nil
}
