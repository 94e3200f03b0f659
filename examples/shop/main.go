// Command shop is a small demo shop built on package anonymous: every
// visitor is greeted by a generated guest name and gets a cart without
// signing up; signing in to a demo account moves the guest's cart into the
// account's, merging quantities. A guest's cart is the guest's data, kept
// with the guest; accounts' carts are kept in memory, or beside the guests
// in Redis (-redis) or in PostgreSQL (-postgres), so that a restart loses
// no cart. On PostgreSQL the accounts' carts are the shop's own table, and
// a login moves the guest's cart in the transaction that ends the guest.
//
//	go run ./examples/shop                  # http://localhost:8080, all in memory
//	go run ./examples/shop -redis redis://127.0.0.1:6379/0 -hash-key "$(openssl rand -hex 32)"
//	go run ./examples/shop -postgres 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' -hash-key "$(openssl rand -hex 32)"
//
// Cookies are Secure by default. Browsers keep Secure cookies on
// http://localhost and http://127.0.0.1; to try the shop over plain HTTP
// on another host name, add -insecure-cookies.
//
// Flags:
//
//	-addr string           address to listen on (default ":8080")
//	-hash-key string       64 hex digits (32 bytes) signing the cookies; default
//	                       $SHOP_HASH_KEY, else random keys (cookies do not survive a restart)
//	-insecure-cookies      drop the cookies' Secure attribute (plain HTTP on a host
//	                       other than localhost)
//	-postgres string       keep guests and accounts' carts in PostgreSQL at this URL
//	                       (postgres://user@host:port/db?sslmode=disable); default: in memory
//	-redis string          keep guests and accounts' carts in Redis at this URL
//	                       (redis://host:port/db); default: in memory
//	-redis-prefix string   prefix of the shop's Redis keys (default "anon:")
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/examples/shop/app"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/redisstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "shop:", err)
		}
		os.Exit(2)
	}
}

// config is the command line, parsed.
type config struct {
	addr        string
	hashKey     []byte
	insecure    bool
	redisURL    string
	redisPrefix string
	postgresURL string
}

func parseConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	fs := flag.NewFlagSet("shop", flag.ContinueOnError)
	fs.SetOutput(out)
	c := &config{}
	var key string
	fs.StringVar(&c.addr, "addr", ":8080", "address to listen on")
	fs.StringVar(&key, "hash-key", "", "64 hex digits (32 bytes) signing the cookies; default $SHOP_HASH_KEY, else random keys (cookies do not survive a restart)")
	fs.BoolVar(&c.insecure, "insecure-cookies", false, "drop the cookies' Secure attribute, for plain HTTP on a host other than localhost")
	fs.StringVar(&c.redisURL, "redis", "", "keep guests and accounts' carts in Redis at this URL (redis://host:port/db); default: in memory")
	fs.StringVar(&c.redisPrefix, "redis-prefix", "anon:", "prefix of the shop's Redis keys")
	fs.StringVar(&c.postgresURL, "postgres", "", "keep guests and accounts' carts in PostgreSQL at this URL (postgres://user@host:port/db?sslmode=disable); default: in memory")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.redisURL != "" && c.postgresURL != "" {
		return nil, errors.New("-redis and -postgres: choose one store")
	}
	if key == "" {
		key = getenv("SHOP_HASH_KEY")
	}
	if key != "" {
		b, err := hex.DecodeString(key)
		if err != nil || len(b) != 32 {
			// The key itself is a secret: never echo it.
			return nil, errors.New("the hash key must be 64 hex digits (32 bytes); make one with: openssl rand -hex 32")
		}
		c.hashKey = b
	}
	return c, nil
}

// redisOptions parses url with the short timeouts of a fast fail-open: a
// frozen Redis costs a request well under a second, not go-redis's default
// of several, and the page is served without a guest meanwhile.
func redisOptions(url string) (*redis.Options, error) {
	ro, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	ro.DialTimeout = time.Second
	ro.ReadTimeout = 200 * time.Millisecond
	ro.WriteTimeout = 200 * time.Millisecond
	ro.PoolTimeout = 300 * time.Millisecond
	ro.MaxRetries = 1
	ro.DialerRetries = 1
	ro.ContextTimeoutEnabled = true
	return ro, nil
}

// openStore returns the guest store and the accounts' carts the flags
// choose, and how to close them: both in memory, both in Redis on one
// client, under the same key prefix, or both in PostgreSQL.
func openStore(ctx context.Context, c *config) (anonymous.Store, app.Carts, func(), error) {
	if c.postgresURL != "" {
		return openPostgres(ctx, c.postgresURL)
	}
	if c.redisURL == "" {
		s, err := memstore.New(memstore.Options{})
		if err != nil {
			return nil, nil, nil, err
		}
		return s, app.NewMemoryCarts(), func() { s.Close() }, nil
	}
	ro, err := redisOptions(c.redisURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-redis: %w", err)
	}
	client := redis.NewClient(ro)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		return nil, nil, nil, fmt.Errorf("redis at %s: %w", ro.Addr, err)
	}
	s, err := redisstore.New(client, redisstore.Options{Prefix: c.redisPrefix})
	if err != nil {
		client.Close()
		return nil, nil, nil, err
	}
	return s, app.NewRedisCarts(client, c.redisPrefix), func() { client.Close() }, nil
}

// run serves the shop until ctx is done.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	c, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	store, carts, closeStore, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer closeStore()
	shop, err := app.New(store, app.Config{HashKey: c.hashKey, InsecureCookies: c.insecure, Logger: log, Carts: carts})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           shop,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	storeName := "memory"
	switch {
	case c.redisURL != "":
		storeName = "redis"
	case c.postgresURL != "":
		storeName = "postgres"
	}
	log.Info("shop: listening", "url", "http://"+browsable(ln.Addr()), "store", storeName, "secure_cookies", !c.insecure)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	// Links whose last write the store failed are retried in the
	// background: let them finish before the store is closed.
	return shop.Close(sctx)
}

// browsable turns a listener's address into one to type in a browser:
// localhost for a wildcard address, where Secure cookies work over HTTP.
func browsable(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return a.String()
	}
	return fmt.Sprintf("localhost:%d", ta.Port)
}
