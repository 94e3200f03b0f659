package redisstore_test

import (
	"testing"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/redisstore"
	"github.com/guestpass/anonymous/storetest"
	"github.com/redis/go-redis/v9"
)

// conformance runs the storetest suite on client, each store under its own
// prefix.
func conformance(t *testing.T, client redis.UniversalClient) {
	storetest.Run(t, func(t *testing.T) anonymous.Store {
		s, err := redisstore.New(client, redisstore.Options{Prefix: redistest.Prefix(t, client)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestConformance(t *testing.T) { conformance(t, redistest.Client(t)) }

func TestConformanceCluster(t *testing.T) { conformance(t, redistest.ClusterClient(t)) }
