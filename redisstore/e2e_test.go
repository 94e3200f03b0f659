package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"sort"
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

var testKeys = []anonymous.Key{{Hash: []byte("0123456789abcdef0123456789abcdef")}}

// whoami answers "guest <id>" for a request with a guest, "none" without.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if u := anonymous.UserFrom(r.Context()); u != nil {
		io.WriteString(w, "guest "+u.ID)
		return
	}
	io.WriteString(w, "none")
})

func manager(t testing.TB, s anonymous.Store, o anonymous.Options) *anonymous.Manager {
	t.Helper()
	if o.Keys == nil {
		o.Keys = testKeys
	}
	o.CookieInsecure = true // httptest serves plain HTTP on 127.0.0.1
	if o.CookieName == "" {
		o.CookieName = "anonymous_guest"
	}
	if o.Budget.Levels == nil {
		o.Budget.Off = true // every test visitor comes from 127.0.0.1
	}
	o.ErrorLog = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := anonymous.New(s, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// serve runs h on a test server and returns its URL.
func serve(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// browser is a visitor with a cookie jar.
func browser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

type answer struct {
	status    int
	body      string
	setCookie bool
	took      time.Duration
}

func visit(t testing.TB, c *http.Client, url string) answer {
	t.Helper()
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, string(b), len(resp.Header.Values("Set-Cookie")) > 0, time.Since(start)}
}

// guestID is the id a "guest <id>" answer names, "" for any other.
func guestID(a answer) string {
	id, ok := strings.CutPrefix(a.body, "guest ")
	if a.status != http.StatusOK || !ok {
		return ""
	}
	return id
}

// TestMiddlewareOnCluster serves returning visitors through the middleware
// on a 3-master Cluster and checks that their guests are spread over all
// three masters, each with its keys in one slot.
func TestMiddlewareOnCluster(t *testing.T) {
	c := redistest.ClusterClient(t)
	prefix := redistest.Prefix(t, c)
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, manager(t, s, anonymous.Options{}).Middleware(whoami)) // without PersistOnIssue

	const visitors = 60 // all on one master by chance: 3 × (1/3)^59
	var want []string
	for range visitors {
		b := browser(t)
		first := visit(t, b, url)
		id := guestID(first)
		if id == "" || !first.setCookie {
			t.Fatalf("first visit: %+v, want a guest and its cookie", first)
		}
		for i := range 2 { // the return that stores the guest, then one that loads it
			if again := guestID(visit(t, b, url)); again != id {
				t.Fatalf("return %d of guest %s answered as %q", i+1, id, again)
			}
		}
		want = append(want, prefix+"{"+id+"}")
	}

	var (
		mu       sync.Mutex
		got      []string
		perNode  = map[string]int{}
		ctx, cxl = context.WithTimeout(context.Background(), 10*time.Second)
	)
	defer cxl()
	err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		keys, err := redistest.MasterKeys(ctx, n, prefix)
		if err != nil {
			return err
		}
		for _, k := range keys {
			// The node holding a key owns its slot: reading it there is no
			// MOVED redirection.
			if err := n.Get(ctx, k).Err(); err != nil {
				return fmt.Errorf("key %s on %s: %w", k, n.Options().Addr, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		got = append(got, keys...)
		perNode[n.Options().Addr] = len(keys)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("keys on the masters:\n%q\nwant one record per guest:\n%q", got, want)
	}
	t.Logf("guests per master: %v", perNode)
	if len(perNode) != 3 {
		t.Fatalf("saw %d masters, want 3", len(perNode))
	}
	for addr, n := range perNode {
		if n == 0 {
			t.Errorf("master %s holds none of %d guests", addr, visitors)
		}
	}
}

// outageClient returns a client of the Redis at REDIS_URL reached through
// p, with the short timeouts an application that fails open would choose.
func outageClient(t testing.TB, p *proxy, timeout time.Duration) *redis.Client {
	opt := redistest.Options(t)
	opt.Addr = p.Addr()
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeout, timeout, timeout
	opt.MaxRetries = 1
	opt.MinRetryBackoff, opt.MaxRetryBackoff = 5*time.Millisecond, 10*time.Millisecond
	opt.DialerRetries = 1
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// worstCase is the longest a request may wait on a dead Redis: each try
// may spend the dial, write and read timeouts, plus one for the
// connection's handshake (HELLO), plus slack for a loaded test machine.
func worstCase(c *redis.Client) time.Duration {
	o := c.Options()
	try := o.DialTimeout + o.WriteTimeout + 2*o.ReadTimeout
	return time.Duration(o.MaxRetries+1)*(try+o.MaxRetryBackoff) + 500*time.Millisecond
}

// TestOutage cuts Redis away from a running application and brings it
// back: requests are answered without a guest (or 503 with FailClosed), no
// cookie is replaced, nothing is written, and every guest comes back with
// its id.
func TestOutage(t *testing.T) {
	direct := redistest.Client(t)
	prefix := redistest.Prefix(t, direct)
	p := newProxy(t, direct.Options().Addr)
	c := outageClient(t, p, 200*time.Millisecond)
	bound := worstCase(c)
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	open := serve(t, manager(t, s, anonymous.Options{PersistOnIssue: true}).Middleware(whoami))
	closed := serve(t, manager(t, s, anonymous.Options{PersistOnIssue: true, FailClosed: true}).Middleware(whoami))
	// A guest issued but not stored yet: its cookie carries it until it returns.
	lazy := serve(t, manager(t, s, anonymous.Options{CookieName: "lazy_guest"}).Middleware(whoami))
	stored := func() int { return len(redistest.Keys(t, direct, prefix)) }

	const n = 8
	browsers := make([]*http.Client, n)
	ids := make([]string, n)
	for i := range browsers {
		browsers[i] = browser(t)
		if ids[i] = guestID(visit(t, browsers[i], open)); ids[i] == "" {
			t.Fatal("no guest before the outage")
		}
		if again := guestID(visit(t, browsers[i], open)); again != ids[i] {
			t.Fatalf("guest %s returned as %q before the outage", ids[i], again)
		}
	}
	pending := browser(t)
	pendingID := guestID(visit(t, pending, lazy))
	if pendingID == "" {
		t.Fatal("no pending guest before the outage")
	}
	if got := stored(); got != n {
		t.Fatalf("%d keys before the outage, want %d", got, n)
	}

	during := func(t *testing.T) {
		var slowest time.Duration
		defer func() { t.Logf("slowest fail-open answer: %v (bound %v)", slowest, bound) }()
		for i, b := range browsers {
			a := visit(t, b, open)
			slowest = max(slowest, a.took)
			if a.status != http.StatusOK || a.body != "none" || a.setCookie {
				t.Errorf("guest %s during the outage: %+v, want 200, no guest, no Set-Cookie", ids[i], a)
			}
			if a.took > bound {
				t.Errorf("guest %s waited %v during the outage, want at most %v", ids[i], a.took, bound)
			}
			if a := visit(t, b, closed); a.status != http.StatusServiceUnavailable || a.setCookie {
				t.Errorf("guest %s with FailClosed: %+v, want 503 and no Set-Cookie", ids[i], a)
			}
		}
		if a := visit(t, browser(t), open); a.status != http.StatusOK || a.body != "none" || a.setCookie {
			t.Errorf("new visitor during the outage: %+v, want 200, no guest, no Set-Cookie", a)
		}
		if a := visit(t, pending, lazy); a.status != http.StatusOK || a.body != "none" || a.setCookie {
			t.Errorf("pending guest during the outage: %+v, want 200, no guest, cookie untouched", a)
		}
		if got := stored(); got != n {
			t.Errorf("%d keys during the outage, want still %d", got, n)
		}
	}
	t.Run("Refused", func(t *testing.T) {
		p.set(refuse)
		during(t)
	})
	t.Run("Unanswered", func(t *testing.T) {
		p.set(blackhole)
		during(t)
	})

	p.set(forward)
	for i, b := range browsers {
		if got := guestID(visit(t, b, open)); got != ids[i] {
			t.Errorf("after the outage guest %s came back as %q", ids[i], got)
		}
	}
	if got := guestID(visit(t, pending, lazy)); got != pendingID {
		t.Errorf("after the outage pending guest %s came back as %q", pendingID, got)
	}
	if got := stored(); got != n+1 {
		t.Errorf("%d keys after the outage, want %d (the pending guest stored on its return)", got, n+1)
	}
}

// TestDeadlineOnDeadRedis: with a Redis that never answers, each call
// returns at about the context's deadline, not the client's much longer
// timeouts, with an error matching context.DeadlineExceeded.
func TestDeadlineOnDeadRedis(t *testing.T) {
	direct := redistest.Client(t)
	prefix := redistest.Prefix(t, direct)
	p := newProxy(t, direct.Options().Addr)
	c := outageClient(t, p, 10*time.Second)
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	id := newID(t)
	if err := s.Create(context.Background(), id, entry("v")); err != nil {
		t.Fatal(err)
	}
	p.set(blackhole)

	const deadline = 150 * time.Millisecond
	ops := []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, id); return err }},
		{"Create", func(ctx context.Context) error { return s.Create(ctx, newID(t), entry("v")) }},
		{"Update", func(ctx context.Context) error { e := entry("w"); e.Version = 1; return s.Update(ctx, id, e) }},
	}
	for _, op := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		err := op.fn(ctx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s on a dead Redis: %v, want an error matching context.DeadlineExceeded", op.name, err)
		}
		if took > deadline+time.Second {
			t.Errorf("%s on a dead Redis took %v with a %v deadline", op.name, took, deadline)
		}
		t.Logf("%s: %v", op.name, took)
	}

	p.set(forward)
	if _, err := s.Get(context.Background(), id); err != nil {
		t.Errorf("Get after Redis came back: %v", err)
	}
}

// What a client controls is bounded in Redis too: a 100 KB User-Agent and a
// RemoteAddr holding a 100 KB header (as a proxy middleware may copy
// X-Forwarded-For into it) store a record of a few hundred bytes.
func TestClientInputIsBoundedInRedis(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	m := manager(t, s, anonymous.Options{PersistOnIssue: true})
	h := m.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		id = anonymous.UserFrom(r.Context()).ID
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("User-Agent", strings.Repeat("u", 100<<10))
	r.RemoteAddr = strings.Repeat("203.0.113.1, ", 100<<10/13)
	h.ServeHTTP(httptest.NewRecorder(), r)
	n, err := c.StrLen(t.Context(), prefix+"{"+id+"}").Result()
	if err != nil || n == 0 || n > 1024 {
		t.Fatalf("stored record is %d bytes (%v), want at most 1 KiB", n, err)
	}
	rec, err := m.Record(t.Context(), id)
	if err != nil || rec.Session.IPAddress != "" || len(rec.Session.UserAgent) != 512 {
		t.Errorf("stored IPAddress %q, User-Agent of %d bytes (%v); want none and 512", rec.Session.IPAddress, len(rec.Session.UserAgent), err)
	}
}

// topologies connect to a single node and to a Cluster.
var topologies = map[string]func(testing.TB) redis.UniversalClient{
	"single":  func(t testing.TB) redis.UniversalClient { return redistest.Client(t) },
	"cluster": func(t testing.TB) redis.UniversalClient { return redistest.ClusterClient(t) },
}

// storeOn is a redisstore on c, under a fresh prefix.
func storeOn(t testing.TB, c redis.UniversalClient) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(c, redisstore.Options{Prefix: redistest.Prefix(t, c)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Updates of one guest's data from 64 requests at once all count, on a
// single node and on a Cluster.
func TestConcurrentDataUpdates(t *testing.T) {
	for name, client := range topologies {
		t.Run(name, func(t *testing.T) {
			s := storeOn(t, client(t))
			m := manager(t, s, anonymous.Options{PersistOnIssue: true})
			h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost {
					n, _ := anonymous.JSONFrom[int](r.Context())
					fmt.Fprint(w, n)
					return
				}
				if _, err := anonymous.UpdateJSON(m, w, r, func(n *int) error { *n++; return nil }); err != nil {
					http.Error(w, err.Error(), http.StatusConflict)
				}
			}))
			url := serve(t, h)
			b := browser(t)
			visit(t, b, url)
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					resp, err := b.Post(url, "text/plain", nil)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("update: %d", resp.StatusCode)
					}
				})
			}
			wg.Wait()
			if got := visit(t, b, url).body; got != "64" {
				t.Errorf("after 64 concurrent updates the count is %s, want 64", got)
			}
		})
	}
}

// The budget lives in Redis: two instances of the application share it, on a
// single node and on a Cluster, and its keys expire.
func TestBudgetSharedInRedis(t *testing.T) {
	for name, client := range topologies {
		t.Run(name, func(t *testing.T) {
			c := client(t)
			prefix := redistest.Prefix(t, c)
			s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			client := netip.MustParseAddr("192.0.2.77")
			budget := anonymous.Budget{Levels: perClient(10, time.Hour, 3), Client: func(*http.Request) netip.Addr { return client }}
			a := manager(t, s, anonymous.Options{Budget: budget}).Middleware(whoami)
			b := manager(t, s, anonymous.Options{Budget: budget}).Middleware(whoami)
			stored := 0
			for i := range 8 {
				h := []http.Handler{a, b}[i%2]
				r := httptest.NewRequest("POST", "/api/auth/sign-in/anonymous", nil)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				switch w.Code {
				case http.StatusOK:
					stored++
				case http.StatusTooManyRequests:
					if w.Header().Get("Retry-After") == "" {
						t.Errorf("429 without Retry-After")
					}
				default:
					t.Fatalf("sign-in: %d %s", w.Code, w.Body)
				}
			}
			if stored != 3 {
				t.Errorf("two instances stored %d guests for one client, want the shared burst of 3", stored)
			}
			key := prefix + "budget:{ipv4/32 192.0.2.77/32}:ipv4/32 192.0.2.77/32"
			if ttl := c.PTTL(context.Background(), key).Val(); ttl <= 0 || ttl > time.Hour {
				t.Errorf("budget key %q has TTL %v, want one that expires within the period", key, ttl)
			}
		})
	}
}

// Every request of a page that brings a first-visit cookie back, 8 or 64
// at once, is served the one guest and handed the same new cookie; each
// adds to its cart, and one record is stored. On a single node and on a
// Cluster, over HTTP.
func TestSiblingsOfAFirstReturn(t *testing.T) {
	for name, client := range topologies {
		for _, n := range []int{8, 64} {
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				c := client(t)
				prefix := redistest.Prefix(t, c)
				s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
				if err != nil {
					t.Fatal(err)
				}
				m := manager(t, s, anonymous.Options{})
				url := serve(t, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodPost {
						return // the first visit
					}
					n, err := anonymous.UpdateJSON(m, w, r, func(n *int) error { *n++; return nil })
					if err != nil {
						http.Error(w, err.Error(), http.StatusConflict)
						return
					}
					fmt.Fprintf(w, "%s %s %d", anonymous.UserFrom(r.Context()).ID, anonymous.SessionFrom(r.Context()).Token, n)
				})))
				first, err := http.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				first.Body.Close()
				cookie := first.Cookies()[0]
				answers := make([]string, n)
				cookies := make([]string, n)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						r, _ := http.NewRequest("POST", url, nil)
						r.AddCookie(cookie)
						<-start
						resp, err := http.DefaultClient.Do(r)
						if err != nil {
							t.Error(err)
							return
						}
						defer resp.Body.Close()
						b, _ := io.ReadAll(resp.Body)
						if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
							t.Errorf("sibling %d: %d %s, cookies %v", i, resp.StatusCode, b, resp.Cookies())
							return
						}
						answers[i], cookies[i] = string(b), resp.Cookies()[0].Value
					})
				}
				close(start)
				wg.Wait()
				if t.Failed() {
					return
				}
				id, token, seen := "", "", map[string]bool{}
				for i, a := range answers {
					var k int
					var gid, tok string
					fmt.Sscanf(a, "%s %s %d", &gid, &tok, &k)
					if i == 0 {
						id, token = gid, tok
					}
					if gid != id || tok != token || seen[a] {
						t.Fatalf("sibling %d answered %q, want guest %s with token %s and a count of its own", i, a, id, token)
					}
					seen[a] = true
				}
				if len(seen) != n {
					t.Errorf("%d distinct counts from %d siblings", len(seen), n)
				}
				if keys := redistest.Keys(t, c, prefix); len(keys) != 1 {
					t.Errorf("keys stored: %v, want the one guest's", keys)
				}
			})
		}
	}
}

// On Redis, whose budget is the store's: a planted first-visit cookie's
// holder, polling from another address with his budget spent so that his
// polls store nothing, is never a sibling of the victim who stores it.
func TestPlantedCookiePollerIsNoSibling(t *testing.T) {
	s := redisStore(t)
	attacker, victim := "198.51.100.9:1", "192.0.2.9:1" // the budget's keys are under the test's prefix
	h := manager(t, s, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 1)}}).Middleware(whoami)
	do := func(method, ip string, ck *http.Cookie) (string, *http.Cookie) {
		r := httptest.NewRequest(method, "https://shop.example"+map[string]string{"GET": "/", "POST": "/api/auth/sign-in/anonymous"}[method], nil)
		r.RemoteAddr = ip
		if ck != nil {
			r.AddCookie(ck)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		for _, c := range w.Result().Cookies() {
			return w.Body.String(), c
		}
		return w.Body.String(), nil
	}
	_, F := do("GET", attacker, nil)
	do("POST", attacker, nil) // spends his budget
	for range 3 {
		if _, c := do("GET", attacker, F); c != nil {
			t.Fatal("an over-budget poll was handed a cookie")
		}
	}
	victimSaw, _ := do("GET", victim, F)
	if attackerSaw, _ := do("GET", attacker, F); attackerSaw == victimSaw {
		t.Errorf("the attacker's poll was served the victim's %s", victimSaw)
	}
}

// On Redis, with its budget: sixty browsers behind one address each add an
// item to a cart and keep it, while the address stores only its burst and
// the rate's share of the elapsed time; one whose guest was never stored
// logs in from 16 tabs at once and links once, with its cart.
func TestBrowsersBehindOneAddressOnRedis(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	var links atomic.Int64
	var linked sync.Map
	m := manager(t, s, anonymous.Options{
		Budget: anonymous.Budget{Levels: perClient(100, time.Hour, 20)},
		Identify: func(r *http.Request) (*anonymous.User, error) {
			if id := r.Header.Get("X-User"); id != "" {
				return &anonymous.User{ID: id}, nil
			}
			return nil, nil
		},
		OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error {
			links.Add(1)
			linked.Store(ev.AnonymousUser.User.ID, string(ev.Data))
			return nil
		},
	})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := anonymous.JSONFrom[int](r.Context())
		if r.Method == http.MethodPost {
			if n, err = anonymous.UpdateJSON(m, w, r, func(n *int) error { *n++; return nil }); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
		}
		fmt.Fprint(w, n)
	}))
	do := func(method string, ck *http.Cookie, user string) (string, *http.Cookie) {
		r := httptest.NewRequest(method, "https://shop.example/", nil)
		r.RemoteAddr = "192.0.2.60:1" // the budget's keys are under the test's prefix
		if ck != nil {
			r.AddCookie(ck)
		}
		if user != "" {
			r.Header.Set("X-User", user)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		for _, c := range w.Result().Cookies() {
			return w.Body.String(), c
		}
		return w.Body.String(), ck
	}
	start := time.Now()
	cookies := make([]*http.Cookie, 60)
	for i := range cookies {
		_, cookies[i] = do("GET", nil, "")
		var got string
		if got, cookies[i] = do("POST", cookies[i], ""); got != "1" {
			t.Fatalf("browser %d's first add: %q", i, got)
		}
	}
	for i, ck := range cookies {
		if got, _ := do("GET", ck, ""); got != "1" {
			t.Errorf("browser %d's cart holds %q, want 1", i, got)
		}
	}
	allowed := 20 + int((time.Since(start)*100+time.Hour-1)/time.Hour)
	if n := len(redistest.Keys(t, c, prefix+"{")); n < 20 || n > allowed {
		t.Errorf("%d guests stored from one address, want 20 to %d", n, allowed)
	}
	// The last browser's guest was never stored: its cart is in its cookie.
	last := cookies[len(cookies)-1]
	_, last = do("POST", last, "")
	_, last = do("POST", last, "")
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { do("GET", last, "alice") })
	}
	wg.Wait()
	if links.Load() != 1 {
		t.Fatalf("16 tabs' logins ran OnLinkAccount %d times, want once", links.Load())
	}
	linked.Range(func(id, data any) bool {
		if data != "3" {
			t.Errorf("OnLinkAccount got guest %s's cart %v, want 3", id, data)
		}
		return true
	})
	do("GET", last, "mallory")
	if links.Load() != 1 {
		t.Errorf("the replayed cookie linked again: %d links", links.Load())
	}
}

// On Redis: a login handler's Link on a guest its address's budget never
// stored returns nil, runs OnLinkAccount once with the cart its cookie
// holds, expires the guest cookie, and the old cookie, replayed with
// another login, links nothing.
func TestLinkOfANeverStoredGuestOnRedis(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var links []anonymous.LinkEvent
	m := manager(t, s, anonymous.Options{
		Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 1)},
		OnLinkAccount: func(_ context.Context, ev anonymous.LinkEvent) error {
			mu.Lock()
			defer mu.Unlock()
			links = append(links, ev)
			return nil
		},
	})
	nlinks := func() int { mu.Lock(); defer mu.Unlock(); return len(links) }
	mux := http.NewServeMux()
	mux.HandleFunc("/add", func(w http.ResponseWriter, r *http.Request) {
		if _, err := m.UpdateData(w, r, func(d []byte) ([]byte, error) { return append(d, r.FormValue("item")+","...), nil }); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Link(w, r, &anonymous.User{ID: r.FormValue("user")}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/", func(http.ResponseWriter, *http.Request) {})
	h := m.Middleware(mux)
	// do sends a request with ck, and returns the answer and the guest
	// cookie a browser keeps after it: the last one set, nil once expired.
	do := func(method, target string, ck *http.Cookie) (*httptest.ResponseRecorder, *http.Cookie) {
		r := httptest.NewRequest(method, "https://shop.example"+target, nil)
		r.RemoteAddr = "192.0.2.61:1" // the budget's keys are under the test's prefix
		if ck != nil {
			r.AddCookie(ck)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		for _, c := range w.Result().Cookies() {
			if ck = c; c.MaxAge < 0 {
				ck = nil
			}
		}
		return w, ck
	}
	_, spent := do("GET", "/", nil)
	do("GET", "/", spent) // the address's one guest is stored: its budget is spent
	stored := len(redistest.Keys(t, c, prefix+"{"))
	_, ck := do("GET", "/", nil)
	for _, item := range []string{"tea", "mug"} {
		if w, next := do("POST", "/add?item="+item, ck); w.Code != http.StatusOK {
			t.Fatalf("adding %s: %d %s", item, w.Code, w.Body)
		} else {
			ck = next
		}
	}
	if n := len(redistest.Keys(t, c, prefix+"{")); n != stored {
		t.Fatalf("%d keys stored, %d before the cart; want the visitor held in its cookie", n, stored)
	}
	w, after := do("POST", "/login?user=alice", ck)
	if w.Code != http.StatusOK || after != nil {
		t.Fatalf("Link: %d %s, the browser keeps %+v; want nil and the guest cookie expired", w.Code, w.Body, after)
	}
	mu.Lock()
	if len(links) != 1 || string(links[0].Data) != "tea,mug," || links[0].NewUser.User.ID != "alice" {
		t.Errorf("OnLinkAccount heard %d links; want one to alice with the cart", len(links))
	}
	mu.Unlock()
	if w, _ := do("POST", "/login?user=mallory", ck); w.Code != http.StatusOK || nlinks() != 1 {
		t.Errorf("the old cookie replayed with another login: %d %s, %d links; want nil and no new link", w.Code, w.Body, nlinks())
	}
}

// perClient is a budget of burst guests at once, then rate per period, per
// client address: an IPv4 address or an IPv6 /64.
func perClient(rate int, period time.Duration, burst int) []anonymous.Level {
	return []anonymous.Level{
		{By: "ipv6/64", Burst: burst, Rate: rate, Period: period},
		{By: "ipv4/32", Burst: burst, Rate: rate, Period: period},
	}
}
