package sqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/redisstore"
	"github.com/guestpass/anonymous/sqlstore"
	"github.com/redis/go-redis/v9"
)

// benchKeys is how many guests each benchmark spreads its calls over.
const benchKeys = 1024

// benchValue is a guest-sized value: a stored guest's record is some 200
// bytes, more with a cart.
func benchValue() []byte {
	v := make([]byte, 200)
	rand.Read(v)
	return v
}

// benchStore returns a store of its own table holding benchKeys guests,
// their keys, and the database.
func benchStore(b *testing.B, d sqlstore.Dialect) (*sqlstore.Store, *sql.DB, []string) {
	db := open(b, d)
	s := newStore(b, db, d, sqlstore.Options{SweepInterval: -1})
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("01JBENCH%018d", i) // a guest id's length
		if err := s.Create(b.Context(), keys[i], anonymous.Entry{Value: benchValue(), Expires: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	return s, db, keys
}

// prepare prepares q on db, closed when the benchmark ends.
func prepare(b *testing.B, db *sql.DB, q string) *sql.Stmt {
	st, err := db.PrepareContext(b.Context(), q)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// BenchmarkGet compares Store.Get of a guest with the bare SELECT of its
// row on the same *sql.DB: "raw", prepared as the store's is (one round
// trip on every driver), and "text", the SQL text through db.QueryRow
// (pgx caches its statement; go-sql-driver prepares and closes one per
// call unless interpolateParams=true).
func BenchmarkGet(b *testing.B) {
	for _, d := range dialects {
		b.Run("db="+d.String(), func(b *testing.B) {
			s, db, keys := benchStore(b, d)
			q := fmt.Sprintf("SELECT value, version, expires_at FROM %s WHERE %s = %s", tableOf(b, s), quoteKey(d), placeholders(d, 1)[0])
			ctx := b.Context()
			scan := func(row *sql.Row) {
				var (
					v        []byte
					ver, exp int64
				)
				if err := row.Scan(&v, &ver, &exp); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("via=raw", func(b *testing.B) {
				st := prepare(b, db, q)
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					scan(st.QueryRowContext(ctx, keys[i%benchKeys]))
				}
			})
			b.Run("via=text", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					scan(db.QueryRowContext(ctx, q, keys[i%benchKeys]))
				}
			})
			b.Run("via=store", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := s.Get(ctx, keys[i%benchKeys]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkUpdate compares Store.Update of a guest (a new value, a later
// expiry) with the bare conditional UPDATE, prepared, that checks it
// changed one row. Each has guests of its own, whose versions it tracks.
func BenchmarkUpdate(b *testing.B) {
	for _, d := range dialects {
		b.Run("db="+d.String(), func(b *testing.B) {
			s, db, keys := benchStore(b, d)
			p := placeholders(d, 5)
			q := fmt.Sprintf("UPDATE %s SET value = %s, version = version + 1, expires_at = %s WHERE %s = %s AND version = %s AND expires_at > %s",
				tableOf(b, s), p[0], p[1], quoteKey(d), p[2], p[3], p[4])
			ctx := b.Context()
			value := benchValue()
			// raw writes the first half of the guests, store the second.
			versions := make([]uint64, benchKeys)
			for i := range versions {
				versions[i] = 1
			}
			b.Run("via=raw", func(b *testing.B) {
				st := prepare(b, db, q)
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					k := i % (benchKeys / 2)
					now := time.Now()
					res, err := st.ExecContext(ctx, value, now.Add(time.Hour).UnixMilli(), keys[k], int64(versions[k]), now.UnixMilli())
					if err != nil {
						b.Fatal(err)
					}
					if n, err := res.RowsAffected(); n != 1 || err != nil {
						b.Fatalf("UPDATE changed %d rows (%v), want 1", n, err)
					}
					versions[k]++
				}
			})
			b.Run("via=store", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					k := benchKeys/2 + i%(benchKeys/2)
					e := anonymous.Entry{Value: value, Version: versions[k], Expires: time.Now().Add(time.Hour)}
					if err := s.Update(ctx, keys[k], e); err != nil {
						b.Fatal(err)
					}
					versions[k]++
				}
			})
		})
	}
}

// BenchmarkGetElsewhere measures Store.Get of the same guests on the other
// stores, for docs/sql.md's comparison: memstore, and redisstore on the
// Redis at REDIS_URL (default redis://127.0.0.1:6379/0), under a random key
// prefix whose keys it deletes.
func BenchmarkGetElsewhere(b *testing.B) {
	b.Run("db=Memory", func(b *testing.B) {
		s, err := memstore.New(memstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		getEach(b, s)
	})
	b.Run("db=Redis", func(b *testing.B) {
		getEach(b, redisStore(b))
	})
}

// redisStore returns a redisstore on the Redis at REDIS_URL (default
// redis://127.0.0.1:6379/0), under a random key prefix whose keys it
// deletes when b ends.
func redisStore(b *testing.B) *redisstore.Store {
	opt, err := redis.ParseURL(env("REDIS_URL", "redis://127.0.0.1:6379/0"))
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(opt)
	b.Cleanup(func() { c.Close() })
	if err := c.Ping(b.Context()).Err(); err != nil {
		unavailable(b, "Redis at "+opt.Addr, err)
	}
	prefix := table() + ":"
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		keys, _ := c.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(context.Background(), keys...)
		}
	})
	return s
}

// getEach stores benchKeys guests in s and measures Get of them in turn.
func getEach(b *testing.B, s anonymous.Store) {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("01JBENCH%018d", i)
		if err := s.Create(b.Context(), keys[i], anonymous.Entry{Value: benchValue(), Expires: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("via=store", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := s.Get(b.Context(), keys[i%benchKeys]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLink measures a login that links a stored guest with a cart of
// one row, through the middleware: on each SQL database, in one
// transaction (sqlstore is a TxStore); and with the guests in Redis and
// the cart on PostgreSQL, with the claim, the lease and the final write.
func BenchmarkLink(b *testing.B) {
	for _, d := range dialects {
		b.Run("db="+d.String(), func(b *testing.B) {
			db := open(b, d)
			st := newStore(b, db, d, sqlstore.Options{SweepInterval: -1})
			linkEach(b, newShop(b, d, db, st, createCart(b, db, d),
				anonymous.Options{PersistOnIssue: true, Budget: anonymous.Budget{Off: true}}))
		})
	}
	b.Run("db=Redis", func(b *testing.B) {
		st := redisStore(b)
		db := open(b, sqlstore.Postgres)
		linkEach(b, newShop(b, sqlstore.Postgres, db, st, createCart(b, db, sqlstore.Postgres),
			anonymous.Options{PersistOnIssue: true, Budget: anonymous.Budget{Off: true}}))
	})
}

// linkEach stores b.N guests with a cart row each (the budget is off:
// they come from one address), then times their logins.
func linkEach(b *testing.B, s *shop) {
	cookies := make([]*http.Cookie, b.N)
	for i := range cookies {
		_, cookies[i] = s.do(b, "/cart?item=book", nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if code, _ := s.do(b, "/login?user=u"+strconv.Itoa(i), cookies[i]); code != http.StatusOK {
			b.Fatalf("login: %d", code)
		}
	}
	b.StopTimer()
	if n := s.callbacks.Load(); n != int64(b.N) {
		b.Fatalf("%d callbacks for %d logins", n, b.N)
	}
}
