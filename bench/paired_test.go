package bench_test

import (
	"net/http"
	"testing"
	"time"
)

// pairedBatch is how many requests one side serves before the next takes
// its turn: a few milliseconds on Redis, short enough that the machine's
// drift falls on every side alike.
const pairedBatch = 100

// BenchmarkPaired serves a returning guest's requests through each of its
// sides in turn, pairedBatch at a time, one request at a time (a visitor's
// latency, not a throughput), in one order and then the reverse, so that
// no side always follows the same one. On a shared machine, separate
// benchmarks drift apart by tens of percent (bench/README.md); sides that
// take turns every few milliseconds drift together, so their ratio holds
// within a few percent. An op is one request through every side; each
// side's ns/op is reported as "<side>-ns/op" (cmd/ratios reads them).
//
//	memstore  the returning floor (BenchmarkFloor) and the middleware on
//	          memstore;
//	redis     a raw GET (the rawget contender), the floor with its record
//	          in Redis, and the middleware on redisstore.
func BenchmarkPaired(b *testing.B) {
	b.Run("memstore", func(b *testing.B) {
		returning, fresh := anonymousMem(onReturn)(b)
		ck := settle(b, returning, fresh)
		f := newFloor(b, cookieValue(b, ck))
		runPaired(b, []pairedSide{
			{name: "floor", h: f, ck: ck},
			{name: "anonymous-memstore", h: returning, ck: ck},
		})
	})
	b.Run("redis", func(b *testing.B) {
		returning, fresh := anonymousMem(onReturn)(b)
		ck := settle(b, returning, fresh)
		f := newRedisFloor(b, cookieValue(b, ck))
		rawReturning, rawFresh := buildRawGET(b)
		anon, anonFresh := anonymousRedis(onReturn)(b)
		runPaired(b, []pairedSide{
			{name: "rawget", h: rawReturning, ck: settle(b, rawReturning, rawFresh)},
			{name: "floor-redis", h: f, ck: ck},
			{name: "anonymous-redisstore", h: anon, ck: settle(b, anon, anonFresh)},
		})
	})
}

// pairedSide is one side of BenchmarkPaired: its handler, the Cookie
// header of its settled guest, and the time it took.
type pairedSide struct {
	name string
	h    http.Handler
	ck   string
	took time.Duration
}

// runPaired serves b.N requests through every side, as BenchmarkPaired
// says; each must hand its handler the guest.
func runPaired(b *testing.B, sides []pairedSide) {
	type state struct {
		r  *http.Request
		w  *headerWriter
		id *string
	}
	st := make([]state, len(sides))
	for i, s := range sides {
		id := new(string)
		st[i] = state{request(s.ck, id), &headerWriter{h: http.Header{}}, id}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done, turn := 0, 0; done < b.N; turn++ {
		n := min(pairedBatch, b.N-done)
		for k := range sides {
			i := k
			if turn%2 == 1 {
				i = len(sides) - 1 - k
			}
			s, t := &sides[i], st[i]
			begin := time.Now()
			for range n {
				clear(t.w.h)
				*t.id = ""
				s.h.ServeHTTP(t.w, t.r)
				if *t.id == "" {
					b.Fatalf("%s handed the handler no guest", s.name)
				}
			}
			s.took += time.Since(begin)
		}
		done += n
	}
	for _, s := range sides {
		b.ReportMetric(float64(s.took.Nanoseconds())/float64(b.N), s.name+"-ns/op")
	}
}
