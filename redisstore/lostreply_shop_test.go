package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/redisstore"
	"github.com/redis/go-redis/v9"
)

// requireLostReply skips t, loudly, unless ANON_LOSTREPLY=1: each of these
// tests waits out a client's read timeout, seconds with go-redis's defaults.
func requireLostReply(t *testing.T) {
	t.Helper()
	if os.Getenv("ANON_LOSTREPLY") != "1" {
		const msg = "SKIPPED: a lost-reply test holds one Redis reply past the client's read timeout and takes seconds; set ANON_LOSTREPLY=1 to run it"
		lostReplyWarn.Do(func() { fmt.Fprintf(os.Stderr, "\n*** %s ***\n\n", msg) })
		t.Skip(msg)
	}
}

var lostReplyWarn sync.Once

// clientSetting is a go-redis configuration the rows run under.
type clientSetting struct {
	name string
	set  func(*redis.Options)
}

var clientSettings = []clientSetting{
	// The client docs/redis.md starts with: go-redis's defaults (v9.23:
	// ReadTimeout 5 s, MaxRetries 3).
	{"default", func(*redis.Options) {}},
	// docs/redis.md's "Client settings for a fast fail-open".
	{"fast", func(o *redis.Options) {
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
		o.MaxRetries, o.DialerRetries = 1, 1
		o.MinRetryBackoff, o.MaxRetryBackoff = 8*time.Millisecond, 64*time.Millisecond
	}},
}

// cart is a guest's data in the shop: its items.
type cart struct {
	Items int `json:"items"`
}

// lostReplyShop is an application on a redisstore whose client reaches the
// real Redis through a slowProxy. GET /add adds an item to the guest's cart
// (UpdateJSON); GET /login links the guest to "alice" (Link); GET / shows
// the guest; m.Handler() serves /api/auth/ apart from the middleware.
// Every answer but the endpoints' is "<guest id> <items>", or "none 0".
type lostReplyShop struct {
	setting clientSetting
	proxy   *slowProxy
	direct  *redis.Client // straight to Redis, to look at the keys
	prefix  string
	timeout time.Duration // the client's ReadTimeout
	retries int           // and its MaxRetries
	m       *anonymous.Manager
	srv     *httptest.Server
	log     *lockedBuffer
	started time.Time
	figures string // what lost saw

	linked     atomic.Int32
	linkedData atomic.Value    // []byte: the cart OnLinkAccount was handed
	deleted    [8]atomic.Int32 // by DeleteReason
}

func newLostReplyShop(t *testing.T, cs clientSetting) *lostReplyShop {
	t.Helper()
	s := &lostReplyShop{setting: cs, direct: redistest.Client(t), log: &lockedBuffer{}, started: time.Now()}
	s.prefix = redistest.Prefix(t, s.direct)
	ctx := context.Background()
	// Load the update script, so that the update held back is EVALSHA's
	// applied write, not a NOSCRIPT answer.
	warm, err := redisstore.New(s.direct, redisstore.Options{Prefix: s.prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := warm.Update(ctx, "warm", anonymous.Entry{Value: []byte("x"), Version: 1, Expires: time.Now().Add(time.Minute)}); !errors.Is(err, anonymous.ErrNotFound) {
		t.Fatalf("loading the update script: %v", err)
	}

	s.proxy = newSlowProxy(t, s.direct.Options().Addr)
	opt := redistest.Options(t)
	opt.Addr = s.proxy.Addr()
	opt.ContextTimeoutEnabled = true
	cs.set(opt)
	client := redis.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	s.timeout, s.retries = client.Options().ReadTimeout, client.Options().MaxRetries
	store, err := redisstore.New(client, redisstore.Options{Prefix: s.prefix})
	if err != nil {
		t.Fatal(err)
	}
	s.m, err = anonymous.New(store, anonymous.Options{
		Keys:     testKeys,
		Budget:   anonymous.Budget{Off: true}, // every test visitor comes from 127.0.0.1
		ErrorLog: slog.New(slog.NewTextHandler(s.log, nil)),
		OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error {
			s.linked.Add(1)
			s.linkedData.Store(ev.Data)
			return nil
		},
		OnGuestDeleted: func(_ context.Context, _ *anonymous.User, why anonymous.DeleteReason) {
			s.deleted[min(int(why), len(s.deleted)-1)].Add(1)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.m.Close(ctx)
		if t.Failed() {
			t.Logf("the Manager's ErrorLog:\n%s", s.log)
		}
	})

	app := http.NewServeMux()
	app.HandleFunc("/add", func(w http.ResponseWriter, r *http.Request) {
		c, err := anonymous.UpdateJSON(s.m, w, r, func(c *cart) error { c.Items++; return nil })
		if err != nil {
			http.Error(w, "UpdateJSON: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s %d", anonymous.UserFrom(r.Context()).ID, c.Items)
	})
	app.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if err := s.m.Link(w, r, &anonymous.User{ID: "alice"}); err != nil {
			http.Error(w, "Link: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "linked")
	})
	app.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c, _ := anonymous.JSONFrom[cart](r.Context())
		id := "none"
		if u := anonymous.UserFrom(r.Context()); u != nil {
			id = u.ID
		}
		fmt.Fprintf(w, "%s %d", id, c.Items)
	})
	mux := http.NewServeMux()
	mux.Handle("/api/auth/", s.m.Handler()) // the endpoints, apart from the middleware
	mux.Handle("/", s.m.Middleware(app))
	s.srv = httptest.NewTLSServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// deletions counts OnGuestDeleted's calls, for any reason.
func (s *lostReplyShop) deletions() int32 {
	var n int32
	for i := range s.deleted {
		n += s.deleted[i].Load()
	}
	return n
}

// browser returns a visitor with a cookie jar of its own.
func (s *lostReplyShop) browser(t *testing.T) *http.Client {
	c := s.srv.Client()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Jar, c.Timeout = jar, 60*time.Second
	return c
}

// send answers a request's status and body.
func (s *lostReplyShop) send(t *testing.T, c *http.Client, method, path, bearer string) (int, string) {
	t.Helper()
	r, err := http.NewRequest(method, s.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// get answers GET path's guest id and items, failing t unless it is a 200.
func (s *lostReplyShop) get(t *testing.T, c *http.Client, path string) (id string, items int) {
	t.Helper()
	code, body := s.send(t, c, http.MethodGet, path, "")
	if _, err := fmt.Sscan(body, &id, &items); code != http.StatusOK || err != nil {
		t.Fatalf("GET %s: %d %q", path, code, body)
	}
	return id, items
}

// keys returns the Redis keys under the store's prefix.
func (s *lostReplyShop) keys(t *testing.T) []string { return redistest.Keys(t, s.direct, s.prefix) }

// onlyKey fails t unless the store holds exactly guest id's key.
func (s *lostReplyShop) onlyKey(t *testing.T, id string) {
	t.Helper()
	if keys := s.keys(t); len(keys) != 1 || keys[0] != s.prefix+"{"+id+"}" {
		t.Fatalf("keys under the store's prefix: %q; want guest %s's alone", keys, id)
	}
}

// record returns guest id's record as the store holds it.
func (s *lostReplyShop) record(t *testing.T, id string) *anonymous.Record {
	t.Helper()
	rec, err := s.m.Record(context.Background(), id)
	if err != nil {
		t.Fatalf("Record(%s): %v", id, err)
	}
	return rec
}

// armUpdate holds the reply to the skip+1st update of guest id's record.
func (s *lostReplyShop) armUpdate(id string, skip int) {
	key := s.prefix + "{" + id + "}"
	s.proxy.armFor(func(cmd []string) bool {
		return len(cmd) >= 4 && (strings.EqualFold(cmd[0], "evalsha") || strings.EqualFold(cmd[0], "eval")) &&
			cmd[2] == "1" && cmd[3] == key
	}, skip, s.hold())
}

// armCreate holds the reply to the next SET NX of a guest's record.
func (s *lostReplyShop) armCreate() {
	s.proxy.armFor(func(cmd []string) bool {
		return len(cmd) >= 4 && strings.EqualFold(cmd[0], "set") && strings.HasPrefix(cmd[1], s.prefix+"{") &&
			slices.ContainsFunc(cmd[3:], func(a string) bool { return strings.EqualFold(a, "nx") })
	}, 0, s.hold())
}

// hold is how long the proxy holds a reply: just past the read timeout.
func (s *lostReplyShop) hold() time.Duration {
	return s.timeout + max(s.timeout/10, 50*time.Millisecond)
}

// lost checks that the proxy held a reply that reports the write applied
// (applied: ":0" for the update script, "+OK" for SET NX), that the client
// gave up on it and that go-redis sent the command again; and keeps the
// figures for the row's log line.
func (s *lostReplyShop) lost(t *testing.T, applied string, slow time.Duration) {
	t.Helper()
	h := s.proxy.report(2 * s.hold())
	if h == nil {
		t.Fatal("the proxy held no reply: the test proves nothing")
	}
	s.figures = fmt.Sprintf("command=%s held_reply=%q held=%v client_hung_up=%v resent=%d matching=%d slow_request=%v",
		h.Cmd[0], h.Reply, h.Held.Round(time.Millisecond), h.HungUp, h.Resent, h.Matching, slow.Round(time.Millisecond))
	if !strings.HasPrefix(h.Reply, applied+"\r\n") {
		t.Errorf("the held reply is %q, not %q: Redis did not apply the write", h.Reply, applied)
	}
	if !h.HungUp {
		t.Errorf("the client did not give up on the held reply (held %v, ReadTimeout %v)", h.Held, s.timeout)
	}
	if h.Resent < 1 {
		t.Errorf("go-redis did not send %s again (%d identical, %d matching seen)", h.Cmd[0], h.Resent, h.Matching)
	}
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// lockedBuffer is an io.Writer for a logger that requests share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
