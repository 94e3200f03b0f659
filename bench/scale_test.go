//go:build unix

package bench_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/redisstore"
)

// BenchmarkScale serves returning guests through the middleware while the
// store holds 1,000, 100,000 and 1,000,000 guests: how a request's cost, the
// garbage collector's share of it and the slowest requests grow with the
// number of guests, and what a guest costs in memory.
//
// Each case fills a fresh store directly with records like the ones the
// middleware writes (a browser's 115-byte User-Agent, no data), except for
// up to scaleCookies guests minted through the middleware, whose cookies
// the requests then cycle over. Besides ns/op, B/op and allocs/op it
// reports:
//
//	heap-B/guest   Go heap per guest: HeapAlloc after a GC, full store minus
//	               empty store, divided by the guests (memstore)
//	redis-B/guest  Redis used_memory per guest, likewise (redis); the
//	               store is filled through connections closed before the
//	               full server is measured, after a first key stored
//	               before the empty one is: neither connections nor the
//	               server's first key are a guest's
//	cpu-ns/op      process CPU time (user+system, every thread: the
//	               collector's included) per request
//	gc-ns/op       the collector's CPU time per request, from runtime/metrics
//	               /cpu/classes/gc/total:cpu-seconds
//	gc-%           that time's share of the CPU time runtime/metrics counts
//	               busy (total less idle): the runtime's estimates count a
//	               thread's wall time, so on a loaded machine gc-ns/op
//	               overstates and the share is the steadier figure
//	p50-ns, p99-ns, max-ns  latency of single requests
//
// The Redis cases run on a redis-server of their own when one is on the
// PATH (a private one, so that used_memory is this store's alone), else on
// REDIS_URL under a random key prefix (used_memory is then the server's,
// shared with whatever else it holds); they skip without a server, or fail
// under ANON_REQUIRE_REDIS=1. The 1,000,000-guest Redis case runs on a
// private server only.
//
// Under -benchtime 1x or -short only the 1,000-guest cases run, so that
// `go test -race -bench . -benchtime 1x` stays quick. A full run
// (scale.sh) takes about a minute on 2 idle cores, up to five on a busy
// machine.
func BenchmarkScale(b *testing.B) {
	b.Cleanup(scaleRelease)
	for _, kind := range []string{"memstore", "redis"} {
		for _, n := range []int{1_000, 100_000, 1_000_000} {
			b.Run(fmt.Sprintf("%s/guests=%d", kind, n), func(b *testing.B) {
				if n > 1_000 && scaleQuick() {
					b.Skip("only the 1,000-guest case runs under -benchtime 1x or -short")
				}
				scaleServe(b, scaleSetup(b, kind, n))
			})
		}
	}
}

const (
	// scaleUA is a browser's User-Agent, the largest field of a guest
	// without data.
	scaleUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	// scaleCookies bounds the guests whose cookies the requests cycle over.
	scaleCookies = 4096
	// scaleLifetime is the guests' lifetime: no request refreshes one, and
	// keys an interrupted run leaves in a shared Redis vanish by themselves.
	scaleLifetime = time.Hour
)

var scaleKey = []byte("bench-scale-hmac-key-32-bytes-ok")

// scaleQuick reports whether the run is a smoke test: -benchtime 1x or
// -short.
func scaleQuick() bool {
	f := flag.Lookup("test.benchtime")
	return testing.Short() || f != nil && f.Value.String() == "1x"
}

// scaleEnv is one filled store and the requests that return to it. It
// outlives the benchmark function's calls (one per b.N tried), since
// filling a million guests takes seconds, and is released when the next
// case needs memory or BenchmarkScale ends.
type scaleEnv struct {
	name    string
	handler http.Handler
	cookies []string // the Cookie headers of the guests requests return as
	metric  string   // "heap-B/guest" or "redis-B/guest"
	size    float64  // its value
	release func()
}

var scaleCur *scaleEnv

func scaleRelease() {
	if scaleCur != nil {
		scaleCur.release()
		scaleCur = nil
	}
	runtime.GC()
	runtime.GC()
}

// scaleSetup returns the environment of the named case, building it on the
// first call.
func scaleSetup(b *testing.B, kind string, n int) *scaleEnv {
	name := fmt.Sprintf("%s/%d", kind, n)
	if scaleCur != nil && scaleCur.name == name {
		return scaleCur
	}
	scaleRelease()
	env := &scaleEnv{name: name, release: func() {}}
	var (
		store   anonymous.Store // serves the benchmark
		fill    anonymous.Store // is filled: store, or store through other connections
		filled  = func() {}     // called once the store is filled
		measure func() float64  // the memory in use, as the metric counts it
	)
	switch kind {
	case "memstore":
		s, err := memstore.New(memstore.Options{MaxBytes: -1})
		if err != nil {
			b.Fatal(err)
		}
		env.release = func() { s.Close() }
		store, fill, env.metric, measure = s, s, "heap-B/guest", scaleHeap
	case "redis":
		c, prefix, release := scaleRedis(b, n)
		env.release = release
		// The store is filled through connections of their own, closed
		// before the server is measured again: a connection costs the
		// server tens of KB, which are not the guests'. c, which serves
		// the benchmark, has one connection so far, open throughout.
		fc := redis.NewClient(c.Options())
		store, fill = scaleRedisStore(b, c, prefix), scaleRedisStore(b, fc, prefix)
		env.metric = "redis-B/guest"
		measure = func() float64 { return scaleUsedMemory(b, c) }
		base := scaleClients(b, c)
		filled = func() {
			fc.Close()
			scaleDisconnected(b, c, base)
		}
		// The server's first key costs it some 70 KB besides the key: it
		// is stored, through a connection of its own, before measuring.
		wc := redis.NewClient(c.Options())
		scaleFill(b, scaleRedisStore(b, wc, prefix), 1)
		wc.Close()
		scaleDisconnected(b, c, base)
	}
	scaleCur = env // released by the next case, or by BenchmarkScale's end
	handler := func(s anonymous.Store) http.Handler {
		m, err := anonymous.New(s, anonymous.Options{
			Keys: []anonymous.Key{{Hash: scaleKey}}, PersistOnIssue: true,
			Lifetime: scaleLifetime, Budget: anonymous.Budget{Off: true}, ErrorLog: quiet,
		})
		if err != nil {
			b.Fatal(err)
		}
		return m.Middleware(http.HandlerFunc(scaleApp))
	}
	env.handler = handler(store)
	mint := handler(fill)

	before := measure()
	// The cookies of guests minted through the middleware, kept in one
	// string so that what the benchmark holds is easy to subtract.
	k := min(n, scaleCookies)
	var jar strings.Builder
	jar.Grow(k * 200)
	ends := make([]int, 0, k)
	for range k {
		w := &scaleWriter{h: http.Header{}}
		mint.ServeHTTP(w, scaleRequest(""))
		ck := scaleCookieHeader(w.h)
		if !w.seen || ck == "" {
			b.Fatalf("new visitor: guest %v, cookie %q; want both", w.seen, ck)
		}
		jar.WriteString(ck)
		ends = append(ends, jar.Len())
	}
	scaleFill(b, fill, n-k)
	filled()
	after := measure()
	held := 0.0
	if kind == "memstore" {
		held = float64(jar.Cap() + 8*cap(ends))
	}
	env.size = (after - before - held) / float64(n)

	cookies := jar.String()
	env.cookies = make([]string, k)
	for i, start := 0, 0; i < k; i++ {
		env.cookies[i] = cookies[start:ends[i]]
		start = ends[i]
		// Every cookie names a stored guest and needs nothing re-set.
		w := &scaleWriter{h: http.Header{}}
		env.handler.ServeHTTP(w, scaleRequest(env.cookies[i]))
		if !w.seen || w.h["Set-Cookie"] != nil {
			b.Fatalf("returning guest %d: guest %v, Set-Cookie %q", i, w.seen, w.h["Set-Cookie"])
		}
	}
	return env
}

// scaleServe serves the returning guests' requests from GOMAXPROCS
// goroutines and reports the metrics. Each goroutine reuses one request,
// changing its Cookie header: a server parses each request into fresh
// memory, so a request's own memory is no colder with a million guests
// than with a thousand.
func scaleServe(b *testing.B, env *scaleEnv) {
	times := make([]int64, b.N)
	var done atomic.Int64
	var start atomic.Uint64
	cpu0 := scaleCPU()
	gc0, busy0 := scaleGC()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &scaleWriter{h: http.Header{}}
		r := scaleRequest("")
		cookie := []string{""}
		r.Header["Cookie"] = cookie
		i := int(start.Add(7919)) // each goroutine starts elsewhere in the cycle
		for pb.Next() {
			cookie[0] = env.cookies[i%len(env.cookies)]
			i++
			clear(w.h)
			w.seen = false
			t := time.Now()
			env.handler.ServeHTTP(w, r)
			d := time.Since(t)
			if !w.seen || w.h["Set-Cookie"] != nil {
				b.Errorf("returning guest: guest %v, Set-Cookie %q", w.seen, w.h["Set-Cookie"])
				return
			}
			times[done.Add(1)-1] = int64(d)
		}
	})
	b.StopTimer()
	gc1, busy1 := scaleGC()
	cpu, gc, busy := scaleCPU()-cpu0, gc1-gc0, busy1-busy0
	times = times[:done.Load()]
	if len(times) == 0 {
		return
	}
	slices.Sort(times)
	n := float64(len(times))
	b.ReportMetric(env.size, env.metric)
	b.ReportMetric(float64(cpu)/n, "cpu-ns/op")
	b.ReportMetric(gc*1e9/n, "gc-ns/op")
	if busy > 0 {
		b.ReportMetric(100*gc/busy, "gc-%")
	}
	b.ReportMetric(float64(times[len(times)/2]), "p50-ns")
	b.ReportMetric(float64(times[len(times)*99/100]), "p99-ns")
	b.ReportMetric(float64(times[len(times)-1]), "max-ns")
}

// scaleApp is the application behind the middleware: it notes that the
// request has a guest.
func scaleApp(w http.ResponseWriter, r *http.Request) {
	if anonymous.UserFrom(r.Context()) != nil {
		w.(*scaleWriter).seen = true // the middleware wraps no ResponseWriter
	}
}

// scaleWriter keeps headers, drops the body, and carries scaleApp's
// finding.
type scaleWriter struct {
	h    http.Header
	seen bool
}

func (w *scaleWriter) Header() http.Header         { return w.h }
func (w *scaleWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *scaleWriter) WriteHeader(int)             {}

// scaleRequest is a browser's GET /, from 192.0.2.1, carrying cookieHeader
// if it is not empty.
func scaleRequest(cookieHeader string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("User-Agent", scaleUA)
	if cookieHeader != "" {
		r.Header.Set("Cookie", cookieHeader)
	}
	return r
}

// scaleCookieHeader turns Set-Cookie lines into the Cookie header a browser
// sends back.
func scaleCookieHeader(h http.Header) string {
	var pairs []string
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.MaxAge >= 0 && c.Value != "" {
			pairs = append(pairs, c.Name+"="+c.Value)
		}
	}
	return strings.Join(pairs, "; ")
}

// scaleFill stores n more guests, as the middleware would have stored them
// (PersistOnIssue), from several goroutines: a network store needs them to
// fill in bounded time. Each is the value the middleware stored for one
// guest, under an id of its own.
func scaleFill(b *testing.B, store anonymous.Store, n int) {
	value := scaleValue(b)
	workers := runtime.GOMAXPROCS(0)
	if _, ok := store.(*redisstore.Store); ok {
		workers = 64
	}
	var (
		wg   sync.WaitGroup
		left atomic.Int64
		fail atomic.Pointer[error]
	)
	left.Store(int64(n))
	for w := range workers {
		wg.Go(func() {
			rnd := rand.New(rand.NewChaCha8([32]byte{byte(w), byte(w >> 8), 's', 'c', 'a', 'l', 'e'}))
			for left.Add(-1) >= 0 {
				now := time.Now()
				var id ulid.ULID
				_ = id.SetTime(ulid.Timestamp(now))
				for i := range 10 {
					id[6+i] = byte(rnd.Uint32())
				}
				e := anonymous.Entry{Value: value, Expires: now.Add(scaleLifetime)}
				if err := store.Create(context.Background(), id.String(), e); err != nil {
					fail.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := fail.Load(); err != nil {
		b.Fatalf("filling the store: %v", *err)
	}
}

// scaleValue is what the middleware stores for a new guest of scaleRequest:
// a ULID, the default email and name, a fresh session, the hash of a random
// token, the client's address and a browser's User-Agent; no data.
func scaleValue(b *testing.B) []byte {
	ms, err := memstore.New(memstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer ms.Close()
	s := &captureStore{Store: ms}
	m, err := anonymous.New(s, anonymous.Options{
		Keys: []anonymous.Key{{Hash: scaleKey}}, PersistOnIssue: true,
		Lifetime: scaleLifetime, Budget: anonymous.Budget{Off: true}, ErrorLog: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	m.Middleware(http.HandlerFunc(scaleApp)).ServeHTTP(&scaleWriter{h: http.Header{}}, scaleRequest(""))
	if s.created == nil {
		b.Fatal("the middleware stored no guest")
	}
	return s.created
}

// captureStore keeps the value of the last Create.
type captureStore struct {
	anonymous.Store
	created []byte
}

func (s *captureStore) Create(ctx context.Context, key string, e anonymous.Entry) error {
	s.created = bytes.Clone(e.Value)
	return s.Store.Create(ctx, key, e)
}

// scaleHeap returns HeapAlloc once the collector has freed what it can.
func scaleHeap() float64 {
	runtime.GC()
	runtime.GC() // and what the first cycle's finalizers and pools let go
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc)
}

// scaleCPU returns the process's CPU time, user and system, in nanoseconds.
func scaleCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// scaleGC returns the collector's CPU time so far and all busy CPU time
// (total less idle), in seconds, as runtime/metrics estimates them.
func scaleGC() (gc, busy float64) {
	s := []metrics.Sample{
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/cpu/classes/idle:cpu-seconds"},
	}
	metrics.Read(s)
	return s[0].Value.Float64(), s[1].Value.Float64() - s[2].Value.Float64()
}

// scaleRedis returns a client of a Redis to fill with n guests, the key
// prefix to use and what releases it all: a private redis-server when one
// is on the PATH, else REDIS_URL.
func scaleRedis(b *testing.B, n int) (*redis.Client, string, func()) {
	if bin, err := exec.LookPath("redis-server"); err == nil {
		c, release, err := scalePrivateRedis(bin)
		if err != nil {
			b.Fatal(err)
		}
		return c, "anon:", release
	}
	if n > 100_000 {
		b.Skip("a million guests only on a private redis-server (none on the PATH): it would take a shared server's memory")
	}
	redistest.Client(b) // skips, or fails under ANON_REQUIRE_REDIS=1, without a server
	opt := redistest.Options(b)
	opt.PoolSize = 128
	c := redis.NewClient(opt)
	prefix := fmt.Sprintf("t:scale:%016x:", rand.Uint64())
	return c, prefix, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 10_000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 10_000 {
				c.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			c.Unlink(ctx, keys...)
		}
		c.Close()
	}
}

// scalePrivateRedis starts a redis-server of the benchmark's own, like
// redistest.Private, but owned by the scale environment rather than by one
// call of the benchmark function.
func scalePrivateRedis(bin string) (*redis.Client, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	dir, err := os.MkdirTemp("", "scale-redis-")
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("starting redis-server: %w", err)
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, PoolSize: 128})
	release := func() {
		c.Close()
		cmd.Process.Kill()
		cmd.Wait()
		os.RemoveAll(dir)
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return c, release, nil
		}
		if time.Since(start) > 5*time.Second {
			release()
			return nil, nil, fmt.Errorf("private redis-server on port %s: %w", port, err)
		}
	}
}

func scaleRedisStore(b *testing.B, c *redis.Client, prefix string) *redisstore.Store {
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// scaleClients returns how many clients the server has connected.
func scaleClients(b *testing.B, c *redis.Client) int {
	return int(scaleInfo(b, c, "clients", "connected_clients"))
}

// scaleDisconnected waits until the server has at most n clients connected,
// so that the ones just closed are gone and their memory freed. On a
// shared server others may stay connected: it gives up after 10 seconds.
func scaleDisconnected(b *testing.B, c *redis.Client, n int) {
	for start := time.Now(); scaleClients(b, c) > n; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			b.Logf("the server keeps more than %d clients connected; its memory counts theirs", n)
			return
		}
	}
}

// scaleUsedMemory returns the server's used_memory.
func scaleUsedMemory(b *testing.B, c *redis.Client) float64 {
	return scaleInfo(b, c, "memory", "used_memory")
}

// scaleInfo returns a numeric field of a section of the server's INFO.
func scaleInfo(b *testing.B, c *redis.Client, section, field string) float64 {
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("INFO %s has no %s", section, field)
	return 0
}
