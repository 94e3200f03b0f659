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
//	store, err := redisstore.New(client)
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
// serves it without a guest (see anonymous.Options.OnStoreError), and only
// with ContextTimeoutEnabled does go-redis cut a call short at the
// request's deadline. Redis 6.2 or newer is needed (SET PXAT).
//
// # Key layout
//
// With the default prefix "anon:", a guest with id ID has one key,
//
//	anon:{ID}  its record, with its data: one binary string
//
// whose hash tag {ID} keeps it to one Cluster slot. The key carries an
// absolute expiry (SET PXAT), the record's Session.ExpiresAt; an expiry
// already past creates no key, so no key ever lives without one and no
// cleanup job is needed. A deleted or linked guest's record stays, without
// data or personal fields, until that expiry: it reserves the id and keeps
// LinkedTo readable.
//
// The record holds the session's token only as its SHA-256
// (Record.TokenHash), never the token. Its header (format, Version, flags)
// sits at fixed offsets; the times, token hash, strings, a link's lease and
// the data follow. What can be derived (the default email and name, the
// session's user id) is not stored. Get is a single GET and decodes without
// copying the strings. Create is SET NX PXAT; Update is one Lua script
// (EVALSHA, falling back to EVAL) that compares the version in place and
// sets the new value and expiry atomically.
//
// With Options.WaitReplicas, the writes that guard exactly-once linking and
// deletion wait for replicas (WAIT, pipelined on the key master's
// connection) before they count as done.
//
// The abuse budget (anonymous.Budget) lives in Redis too: Store is an
// anonymous.Limiter (go-redis/redis_rate, one key per client, expiring).
//
// # Memory
//
// One guest with a desktop browser's User-Agent (115 bytes) and no data
// costs Redis 280 bytes as MEMORY USAGE reports for its key on Redis 7.0,
// and 361 bytes of used_memory with its expiry entry (the value is 188
// bytes); with a 200-byte cart, 536 and 592.
package redisstore
