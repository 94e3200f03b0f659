package redisstore_test

import (
	"encoding/hex"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/redisstore"
	"github.com/redis/go-redis/v9"
)

// Guests in Redis, shared by every instance of the application. The client
// is the application's: the store never closes it. Short timeouts and one
// retry make a Redis outage cost each request little before it is served
// without a guest (its cookie kept, so the guest comes back with Redis).
func ExampleNew() {
	client := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:6379",
		DialTimeout:           200 * time.Millisecond,
		ReadTimeout:           200 * time.Millisecond,
		WriteTimeout:          200 * time.Millisecond,
		MaxRetries:            1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true, // let request deadlines cut Redis calls short
	})
	defer client.Close() // after the last request

	store, err := redisstore.New(client, redisstore.Options{Prefix: "shop:"}) // default "anon:"
	if err != nil {
		log.Fatal(err)
	}
	// The same keys on every instance, so that each reads the others' cookies.
	hashKey, err := hex.DecodeString(os.Getenv("GUEST_HASH_KEY")) // 64 hex digits
	if err != nil {
		log.Fatal(err)
	}
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: hashKey}},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux() // the application's routes
	log.Fatal(http.ListenAndServe(":8080", guests.Middleware(mux)))
}

// A Cluster, with writes that guard exactly-once linking waiting for a
// replica, so that a failover cannot lose them.
func ExampleNew_cluster() {
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                      []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"},
		DialTimeout:                200 * time.Millisecond,
		ReadTimeout:                200 * time.Millisecond, // above WaitTimeout: WAIT answers on the same read
		WriteTimeout:               200 * time.Millisecond,
		MaxRetries:                 1,
		DialerRetries:              1,
		ClusterStateReloadInterval: time.Second, // find a promoted replica in a second, not a minute
		ContextTimeoutEnabled:      true,
	})
	defer client.Close()

	store, err := redisstore.New(client, redisstore.Options{WaitReplicas: 1})
	if err != nil {
		log.Fatal(err)
	}
	_ = store // anonymous.New(store, opts)
}
