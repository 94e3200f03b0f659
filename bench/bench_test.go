package bench_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The benchmarks call each contender's ServeHTTP directly, no TCP, from
// GOMAXPROCS goroutines (b.RunParallel), each with its own request and
// headerWriter. Every iteration clears the headers and checks that the
// contender did its work, a check that costs every contender the same.

// BenchmarkReturning: a visitor that already has an id sends its cookie;
// the handler reads the id. Nothing is minted and no cookie is set.
func BenchmarkReturning(b *testing.B) { benchContenders(b, false, false) }

// BenchmarkNew: a visitor without a cookie; an id is minted and a cookie
// set.
func BenchmarkNew(b *testing.B) { benchContenders(b, true, false) }

// BenchmarkReturningFresh and BenchmarkNewFresh are BenchmarkReturning and
// BenchmarkNew with what a server pays on every request as well: each
// iteration builds a new request (httptest.NewRequest parses it, as a
// server parses one off the wire) and a new httptest.ResponseRecorder. The
// lean loops leave that cost out, which makes every contender look cheaper
// next to the baselines than it is in a server.
func BenchmarkReturningFresh(b *testing.B) { benchContenders(b, false, true) }

func BenchmarkNewFresh(b *testing.B) { benchContenders(b, true, true) }

// benchContenders serves each contender's new visitors (newVisitor) or a
// settled returning one, reusing one request and headerWriter per
// goroutine, or building them anew each time (freshRequest).
func benchContenders(b *testing.B, newVisitor, freshRequest bool) {
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			h, fresh := c.build(b)
			ck := ""
			if newVisitor {
				h = fresh
			} else {
				ck = settle(b, h, fresh)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var id string
				r := request(ck, &id)
				hw := &headerWriter{h: http.Header{}}
				var w http.ResponseWriter = hw
				for pb.Next() {
					if freshRequest {
						w = httptest.NewRecorder()
						r = request(ck, &id)
					} else {
						clear(hw.h)
					}
					id = ""
					h.ServeHTTP(w, r)
					// A new visitor gets a cookie; a returning one none.
					if setCookie := w.Header()["Set-Cookie"]; id == "" || (setCookie != nil) != newVisitor {
						b.Errorf("new visitor %v: id %q, Set-Cookie %q", newVisitor, id, setCookie)
						return
					}
				}
			})
		})
	}
}
