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
// request's deadline. Redis 6.2 or newer is needed (SET PXAT, KEEPTTL).
//
// # Key layout
//
// With the default prefix "anon:", a guest with id ID has
//
//	anon:{ID}        its record: one binary string
//	anon:{ID}:claim  its link lease while a link runs: the owner's random string
//
// Both keys share the hash tag {ID}, so they live in the same Cluster slot
// and the scripts that touch both are legal on a Cluster. Every key carries
// an absolute expiry (SET PXAT, PEXPIREAT): the record's at
// Session.ExpiresAt, the lease's at its end. An expiry already past creates
// no key, so no key ever lives without one and no cleanup job is needed.
//
// The record holds the session's token only as its SHA-256 (Record.TokenHash),
// never the token. Its fixed header (state, ExpiresAt, UpdatedAt,
// TokenHash) sits at known offsets, so Touch patches it in place; the
// strings (email, name, session id, IP address, User-Agent) follow, each
// with its length. Get is a single GET and decodes without copying the
// strings. Create is SET NX PXAT; Touch, Claim, Release, Delete and Revoke
// are Lua scripts (EVALSHA, falling back to EVAL), each atomic. Delete
// leaves a one-byte tombstone with the guest's expiry in place of the
// record, so the id stays reserved until then, as the Store contract asks.
//
// # Memory
//
// One guest with a desktop browser's User-Agent (115 bytes) costs Redis 408
// bytes, as MEMORY USAGE reports for its key on Redis 7.0 (the value is 259
// bytes; a JSON encoding of the same record costs 856, a hash 976). A
// deleted guest's tombstone costs 104 bytes until the guest's expiry, and
// the lease (136 bytes) exists only while a link runs.
package redisstore
