package redistest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestPrefixCleanup: keys under a test's prefix are gone when the test
// ends, and keys outside it are left alone.
func TestPrefixCleanup(t *testing.T) {
	c := redistest.Client(t)
	cleanup(t, c)
}

func TestPrefixCleanupCluster(t *testing.T) {
	c := redistest.ClusterClient(t)
	cleanup(t, c)
}

func cleanup(t *testing.T, c redis.UniversalClient) {
	ctx := context.Background()
	outer := redistest.Prefix(t, c)
	keep := outer + "{keep}"
	if err := c.Set(ctx, keep, "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	var inner string
	t.Run("sub", func(t *testing.T) {
		inner = redistest.Prefix(t, c)
		if inner == outer || strings.ContainsAny(inner, "{}") {
			t.Fatalf("Prefix returned %q after %q: want fresh and brace-free", inner, outer)
		}
		for i := range 50 { // spread over the masters of a Cluster
			if err := c.Set(ctx, inner+"{"+string(rune('a'+i%26))+string(rune('a'+i/26))+"}", "v", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(redistest.Keys(t, c, inner)); n != 50 {
			t.Fatalf("Keys found %d keys, want 50", n)
		}
	})
	if keys := redistest.Keys(t, c, inner); len(keys) != 0 {
		t.Errorf("keys left under %q after its test: %q", inner, keys)
	}
	if got := redistest.Keys(t, c, outer); len(got) != 1 || got[0] != keep {
		t.Errorf("keys under the outer prefix: %q, want only %q", got, keep)
	}
}
