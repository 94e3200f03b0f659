package bench_test

import (
	"net/http"
	"testing"
)

// The benchmarks call each contender's ServeHTTP directly, no TCP, from
// GOMAXPROCS goroutines (b.RunParallel), each with its own request and
// headerWriter. Every iteration clears the headers and checks that the
// contender did its work, a check that costs every contender the same.

// BenchmarkReturning: a visitor that already has an id sends its cookie;
// the handler reads the id. Nothing is minted and no cookie is set.
func BenchmarkReturning(b *testing.B) {
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			returning, fresh := c.build(b)
			ck := settle(b, returning, fresh)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var id string
				r := request(ck, &id)
				w := &headerWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					id = ""
					returning.ServeHTTP(w, r)
					if id == "" || w.h["Set-Cookie"] != nil {
						b.Errorf("returning visitor: id %q, Set-Cookie %q", id, w.h["Set-Cookie"])
						return
					}
				}
			})
		})
	}
}

// BenchmarkNew: a visitor without a cookie; an id is minted and a cookie
// set.
func BenchmarkNew(b *testing.B) {
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			_, fresh := c.build(b)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var id string
				r := request("", &id)
				w := &headerWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					id = ""
					fresh.ServeHTTP(w, r)
					if id == "" || w.h["Set-Cookie"] == nil {
						b.Errorf("new visitor: id %q, no cookie", id)
						return
					}
				}
			})
		})
	}
}
