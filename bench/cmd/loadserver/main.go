// Command loadserver serves one small HTML page, with or without package
// anonymous's middleware in front of it, for load tests (see ../../load.sh):
// the difference between the two is what the middleware costs a real
// server end to end.
//
//	loadserver -mode none                      # the page alone
//	loadserver -mode memstore                  # guests in memory
//	loadserver -mode redis -redis redis://127.0.0.1:6379/0
//	loadserver -mode rawget                    # the page plus one raw Redis GET
//
// It prints "listening on http://ADDR" once it accepts connections and
// stops on SIGINT or SIGTERM. In redis mode it writes under a random key
// prefix (or -redis-prefix) and removes those keys when it stops.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/redisstore"
)

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title></head>
<body>
<h1>Hello, {{.Name}}</h1>
<ul>{{range .Products}}<li>{{.}}</li>{{end}}</ul>
</body></html>
`))

var products = []string{"Tea", "Coffee", "Cocoa", "Biscuits", "Jam"}

// home greets the guest if the middleware gave one, "visitor" otherwise.
func home(w http.ResponseWriter, r *http.Request) {
	name := "visitor"
	if u := anonymous.UserFrom(r.Context()); u != nil {
		name = u.Name + " (" + u.ID + ")"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := page.Execute(w, struct {
		Name     string
		Products []string
	}{name, products}); err != nil {
		slog.Error("rendering", "err", err)
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadserver:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	mode := flag.String("mode", "memstore", "none (no middleware), rawget (no middleware, one raw Redis GET per request), memstore or redis")
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL for -mode redis and rawget")
	prefix := flag.String("redis-prefix", "", "key prefix for -mode redis and rawget (default: a random one, removed on exit)")
	persist := flag.String("persist", "onreturn", "onreturn or onissue")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	h, done, err := handler(ctx, *mode, *redisURL, *prefix, *persist)
	if err != nil {
		return err
	}
	defer done()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// handler returns the page behind the middleware the mode names, and what
// to run once the server has stopped.
func handler(ctx context.Context, mode, redisURL, prefix, persist string) (http.Handler, func(), error) {
	var h http.Handler = http.HandlerFunc(home)
	var closers []func()
	done := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	store, h, err := storeFor(ctx, mode, redisURL, prefix, h, &closers)
	if err != nil || store == nil {
		return h, done, err
	}
	// The budget is off: load.sh settles its guests, and wrk sends every
	// request, from one loopback address, whose default budget (a burst of
	// 20) would leave most guests unstored.
	o := anonymous.Options{Keys: []anonymous.Key{{Hash: randomKey()}}, Budget: anonymous.Budget{Off: true}}
	switch persist {
	case "onreturn":
	case "onissue":
		o.PersistOnIssue = true
	default:
		return nil, done, fmt.Errorf("unknown -persist %q", persist)
	}
	m, err := anonymous.New(store, o)
	if err != nil {
		return nil, done, err
	}
	return m.Middleware(h), done, nil
}

// storeFor returns the store the mode names (nil for none), and h, wrapped
// in the raw GET for rawget; closers gets what to close on exit.
func storeFor(ctx context.Context, mode, redisURL, prefix string, h http.Handler, closers *[]func()) (anonymous.Store, http.Handler, error) {
	switch mode {
	case "none":
		return nil, h, nil
	case "memstore":
		s, err := memstore.New(memstore.Options{})
		if err != nil {
			return nil, nil, err
		}
		*closers = append(*closers, func() { s.Close() })
		return s, h, nil
	case "redis", "rawget":
	default:
		return nil, nil, fmt.Errorf("unknown -mode %q", mode)
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, nil, err
	}
	c := redis.NewClient(opts)
	*closers = append(*closers, func() { c.Close() })
	if err := c.Ping(ctx).Err(); err != nil {
		return nil, nil, fmt.Errorf("redis: %w", err)
	}
	if prefix == "" {
		b := make([]byte, 8)
		rand.Read(b)
		prefix = "bench:load:" + hex.EncodeToString(b) + ":"
		*closers = append(*closers, func() { removePrefix(c, prefix) })
	}
	if mode == "rawget" {
		h, err = rawGET(ctx, c, prefix+"fixed", h)
		return nil, h, err
	}
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	return s, h, err
}

// rawGET is the Redis floor: before the page, one GET of a fixed key about
// the size of a guest's record, and a 500 if it fails.
func rawGET(ctx context.Context, c *redis.Client, key string, next http.Handler) (http.Handler, error) {
	if err := c.Set(ctx, key, strings.Repeat("v", 160), time.Hour).Err(); err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.Get(r.Context(), key).Err(); err != nil {
			http.Error(w, "redis", http.StatusInternalServerError)
			return
		}
		next.ServeHTTP(w, r)
	}), nil
}

func randomKey() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// removePrefix deletes the keys this server wrote, with SCAN and UNLINK.
func removePrefix(c *redis.Client, prefix string) {
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			c.Unlink(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		c.Unlink(ctx, keys...)
	}
	if err := iter.Err(); err != nil {
		slog.Error("removing keys", "prefix", prefix, "err", err)
	}
}
