// Package redisstore is an anonymous.Store on Redis, through any go-redis v9
// redis.UniversalClient: a single node, a Sentinel failover client or a
// Cluster, with the same constructor.
//
// On a single node:
//
//	client := redis.NewClient(&redis.Options{
//		Addr:                  "127.0.0.1:6379",
//		ContextTimeoutEnabled: true, // let request deadlines bound store calls
//	})
//	defer client.Close()
//	store, err := redisstore.New(client, redisstore.Options{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	guests, err := anonymous.New(store, anonymous.Options{Keys: keys})
//
// On a Cluster:
//
//	client := redis.NewClusterClient(&redis.ClusterOptions{
//		Addrs:                 []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"},
//		ContextTimeoutEnabled: true,
//	})
//	defer client.Close()
//	store, err := redisstore.New(client, redisstore.Options{Prefix: "shop:guest:"})
//
// The caller owns the client: the Store never closes it, so close it after
// the last request is served. The client's settings decide how a Redis
// outage is felt: a request waits for at most the client's DialTimeout,
// ReadTimeout and WriteTimeout times its retries before the middleware
// serves it without a guest (see anonymous.Options.FailClosed), and only
// with ContextTimeoutEnabled does go-redis cut a call short at the
// request's deadline. Redis 6.2 or newer is needed (SET PXAT).
//
// # Key layout
//
// The Store keeps opaque, versioned entries (anonymous.Entry): it knows
// nothing of guests, tokens or links, whose records package anonymous
// encodes. With the default prefix "anon:", the entry under key ID (a
// guest's id) is one key,
//
//	anon:{ID}  one binary string, a frame:
//	           byte 0       3, the frame's format
//	           bytes 1..8   the version, big-endian
//	           bytes 9..16  the expiry in Unix milliseconds, big-endian
//	           then         the entry's value, to the end
//
// whose hash tag {ID} keeps it to one Cluster slot. The key carries the
// entry's absolute expiry (SET PXAT) too; an expiry already past creates
// no key, so no key ever lives without one and no cleanup job is needed.
//
// Get is a single GET; it checks the frame's own expiry, exact to the
// millisecond, which Redis keeps the key through, and returns the value
// without copying it again (go-redis reads each reply into a buffer of its
// own). Create is SET NX PXAT; Update is one Lua script (EVALSHA, falling
// back to EVAL) that compares the version at bytes 1..8 in place and sets
// the new frame and expiry atomically.
//
// Values written by earlier versions of this package (format 2, a guest
// record with the version at the same offset and its expiry as a varint
// at byte 11) are read as they are: Get returns the whole stored string
// as the entry's value, which package anonymous decodes, and the next
// Update writes a frame. Any other value is reported as an error, never
// as a missing entry that a Create could replace.
//
// With Options.WaitReplicas, the writes the Manager marks Durable — those
// that guard exactly-once linking and deletion — wait for replicas (WAIT,
// pipelined on the key master's connection) before they count as done.
//
// The abuse budget (anonymous.Budget) lives in Redis too: Store is an
// anonymous.Limiter: one script charges every level of a client's budget,
// or none, on keys under the store's prefix (limit.go).
//
// # Memory
//
// One guest with a desktop browser's User-Agent (115 bytes) and no data
// costs Redis 312 bytes as MEMORY USAGE reports for its key on Redis 7.0,
// and about 380 bytes of used_memory with its expiry entry (the value is
// 207 bytes, 17 of them the frame's); with a 200-byte cart, 536 and about
// 634.
package redisstore
