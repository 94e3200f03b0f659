package redisstore_test

// The failover tests start a replicated topology of their own — a Cluster
// of three masters with two replicas each, or a master with two replicas
// under three Sentinels — kill a master under load, and check and measure
// what visitors and the application see. They run only with
// ANON_FAILOVER=1 and log their figures on lines starting "failover
// figures:" (go test -run Failover -v).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
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

// ioTimeout bounds each dial, read and write of the clients under test: the
// short timeouts of a fast fail-open.
const ioTimeout = 200 * time.Millisecond

// retryBackoff is the clients' shortest pause before a retry; the longest
// is eight times that.
const retryBackoff = 8 * time.Millisecond

// linkLease is the tests' Options.LinkLease: shorter than the default
// minute, to keep the tests bounded, and still well above a failover's few
// seconds, as a lease must be.
const linkLease = 10 * time.Second

// requestTimeout bounds a test request: longer than a link that waits out
// its whole lease.
const requestTimeout = 3 * linkLease

// callbackWork is how long OnLinkAccount works, as moving a cart in the
// application's database would.
const callbackWork = 20 * time.Millisecond

const failoverPrefix = "fo:"

// Each failover test's topology takes its ports from a base of its own,
// below the kernel's usual range of ephemeral ports (32768 and up), where
// an outgoing connection could hold a port a server is about to take; a
// Cluster node also takes its port plus 10000 for its bus. The scripts
// skip ports in use.
const (
	killMasterClusterPorts  = 21101 // and 31101 up for the bus
	lostWriteClusterPorts   = 21201
	killMasterSentinelPorts = 22101
	lostWriteSentinelPorts  = 22201
)

// failoverTopo is a replicated topology of one test's own, with the master
// the test kills.
type failoverTopo struct {
	name string
	// client returns a new client of the topology with the fail-open
	// settings, closed when the test ends.
	client func(t *testing.T) redis.UniversalClient
	// victim is the master the test kills; replicas are its replicas.
	victim   *redis.Client
	replicas []*redis.Client
	// onVictim reports whether the key lives on the victim.
	onVictim func(ctx context.Context, c redis.UniversalClient, key string) bool
	// promoted waits until a replica of the victim is master and serving,
	// and returns its address.
	promoted func(t *testing.T) string
	// master returns the address of the node that serves the victim's
	// keys now.
	master func(ctx context.Context) (string, error)
	// setDetection sets how long the topology waits before it takes a
	// silent master for dead (Sentinel's down-after-milliseconds, a
	// Cluster's cluster-node-timeout); quick is what the script set.
	setDetection func(ctx context.Context, d time.Duration) error
	quick        time.Duration
}

// patientDetection is how long a topology waits before it takes a silent
// master for dead while a test wants no failover: on a loaded machine a
// server can stall for longer than the scripts' quick settings, and a
// failover nobody caused would lose the writes the test checks.
const patientDetection = 10 * time.Second

// detect sets how long tp waits before it takes a silent master for dead.
func (tp *failoverTopo) detect(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.setDetection(ctx, d); err != nil {
		t.Fatalf("setting the failure detection to %v: %v", d, err)
	}
}

// checkMaster fails the test unless want serves the victim's keys.
func (tp *failoverTopo) checkMaster(t *testing.T, want, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := tp.master(ctx); err != nil || got != want {
		t.Fatalf("%s, %s serves the victim's keys (%v), not %s: a failover the test did not cause (a server stalled past the failure detection)", when, got, err, want)
	}
}

// clusterTopo starts a Cluster of three masters with two replicas each, on
// ports from base; the victim is its first master.
func clusterTopo(t *testing.T, base int) *failoverTopo {
	cl := redistest.StartCluster(t, base, 2)
	tp := &failoverTopo{
		name: "cluster",
		client: func(t *testing.T) redis.UniversalClient {
			c := redis.NewClusterClient(&redis.ClusterOptions{
				Addrs:       cl.Addrs,
				DialTimeout: ioTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout,
				MaxRetries: 1, DialerRetries: 1,
				MinRetryBackoff: retryBackoff, MaxRetryBackoff: 8 * retryBackoff,
				ReadOnly: false, // reads from masters only: a replica may lag
				// go-redis reloads the slots on a MOVED answer, but a dead
				// master gives none: without a short interval the client
				// keeps sending to it for its default minute.
				ClusterStateReloadInterval: time.Second,
				ContextTimeoutEnabled:      true,
			})
			t.Cleanup(func() { c.Close() })
			return c
		},
		victim: redistest.Node(t, cl.Masters[0]),
		onVictim: func(ctx context.Context, c redis.UniversalClient, key string) bool {
			m, err := c.(*redis.ClusterClient).MasterForKey(ctx, key)
			return err == nil && m.Options().Addr == cl.Masters[0]
		},
	}
	tp.replicas = replicasOf(t, tp.victim, 2)
	tp.setDetection = cl.SetNodeTimeout
	quick, err := cl.NodeTimeout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tp.quick = quick
	tp.master = func(ctx context.Context) (string, error) {
		var masters []string
		for _, n := range append([]*redis.Client{tp.victim}, tp.replicas...) {
			if redistest.Role(ctx, n) == "master" {
				masters = append(masters, n.Options().Addr)
			}
		}
		if len(masters) != 1 {
			return "", fmt.Errorf("%d masters among %s and its replicas: %v", len(masters), cl.Masters[0], masters)
		}
		return masters[0], nil
	}
	tp.promoted = func(t *testing.T) string {
		var addr string
		redistest.Poll(t, 30*time.Second, "a replica of "+cl.Masters[0]+" promoted", func(ctx context.Context) error {
			for _, r := range tp.replicas {
				if redistest.Role(ctx, r) != "master" {
					continue
				}
				info, err := r.ClusterInfo(ctx).Result()
				if err != nil {
					return err
				}
				if !strings.Contains(info, "cluster_state:ok") {
					return errors.New("promoted, cluster_state not ok yet")
				}
				addr = r.Options().Addr
				return nil
			}
			return errors.New("no replica is master yet")
		})
		return addr
	}
	return tp
}

// sentinelTopo starts a master with two replicas and three Sentinels, on
// ports from base; the victim is the master.
func sentinelTopo(t *testing.T, base int) *failoverTopo {
	s := redistest.StartSentinel(t, base)
	tp := &failoverTopo{
		name: "sentinel",
		client: func(t *testing.T) redis.UniversalClient {
			c := redis.NewFailoverClient(&redis.FailoverOptions{
				MasterName: s.Master, SentinelAddrs: s.Addrs,
				DialTimeout: ioTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout,
				MaxRetries: 1, DialerRetries: 1,
				MinRetryBackoff: retryBackoff, MaxRetryBackoff: 8 * retryBackoff,
				ContextTimeoutEnabled: true,
			})
			t.Cleanup(func() { c.Close() })
			return c
		},
		victim:   redistest.Node(t, s.Nodes[0]),
		onVictim: func(context.Context, redis.UniversalClient, string) bool { return true },
	}
	tp.replicas = replicasOf(t, tp.victim, 2)
	nodes := map[string]*redis.Client{}
	for _, r := range tp.replicas {
		nodes[r.Options().Addr] = r
	}
	tp.setDetection = s.SetDownAfter
	quick, err := s.DownAfter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tp.quick = quick
	tp.master = s.MasterAddr
	tp.promoted = func(t *testing.T) string {
		var addr string
		redistest.Poll(t, 30*time.Second, "a replica of "+s.Nodes[0]+" promoted", func(ctx context.Context) error {
			a, err := s.MasterAddr(ctx)
			switch {
			case err != nil:
				return err
			case a == s.Nodes[0]:
				return errors.New("the Sentinels still name the old master")
			}
			n, ok := nodes[a]
			if !ok {
				return fmt.Errorf("the Sentinels name %s, not a replica of the old master", a)
			}
			if role := redistest.Role(ctx, n); role != "master" {
				return fmt.Errorf("%s is named master but is %q", a, role)
			}
			addr = a
			return nil
		})
		return addr
	}
	return tp
}

// replicasOf returns clients of master's replicas, once it lists want of
// them.
func replicasOf(t *testing.T, master *redis.Client, want int) []*redis.Client {
	var addrs []string
	redistest.Poll(t, 15*time.Second, "replicas of "+master.Options().Addr, func(ctx context.Context) error {
		var err error
		if addrs, err = redistest.ReplicaAddrs(ctx, master); err == nil && len(addrs) != want {
			err = fmt.Errorf("%d replicas, want %d", len(addrs), want)
		}
		return err
	})
	var rs []*redis.Client
	for _, a := range addrs {
		rs = append(rs, redistest.Node(t, a))
	}
	return rs
}

// linkCalls counts OnLinkAccount's successful calls per guest.
type linkCalls struct {
	mu    sync.Mutex
	n     map[string]int
	after atomic.Pointer[func(guest string)] // runs after a call's work, before it returns nil
}

func newLinkCalls() *linkCalls { return &linkCalls{n: map[string]int{}} }

func (c *linkCalls) onLink(ctx context.Context, ev anonymous.LinkEvent) error {
	select {
	case <-time.After(callbackWork):
	case <-ctx.Done():
		return ctx.Err()
	}
	id := ev.AnonymousUser.User.ID
	c.mu.Lock()
	c.n[id]++
	c.mu.Unlock()
	if f := c.after.Load(); f != nil {
		(*f)(id)
	}
	return nil
}

func (c *linkCalls) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

func (c *linkCalls) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// logCount counts a Manager's log records by message, and their errors by
// kind.
type logCount struct {
	mu   sync.Mutex
	n    map[string]int
	errs map[string]int
}

// ulidRE matches a guest id, a ULID.
var ulidRE = regexp.MustCompile(`\b[0-9A-HJKMNP-TV-Z]{26}\b`)

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCount) WithGroup(string) slog.Handler            { return l }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[r.Message]++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			l.errs[ulidRE.ReplaceAllString(a.Value.String(), "ID")]++
		}
		return true
	})
	return nil
}

// topErrors lists the most frequent errors logged, most frequent first.
func (l *logCount) topErrors(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	kinds := slices.Collect(maps.Keys(l.errs))
	slices.SortFunc(kinds, func(a, b string) int { return l.errs[b] - l.errs[a] })
	var top []string
	for _, k := range kinds[:min(n, len(kinds))] {
		top = append(top, fmt.Sprintf("%d× %s", l.errs[k], k))
	}
	return top
}

func (l *logCount) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for msg, k := range l.n {
		if strings.HasPrefix(msg, prefix) {
			n += k
		}
	}
	return n
}

// app is the application of a failover test: a Manager on a store of the
// topology, served over HTTP.
type app struct {
	wait  int // the store's WaitReplicas
	store *redisstore.Store
	m     *anonymous.Manager
	calls *linkCalls
	logs  *logCount
	url   string
	// linkErrs holds /login's outcome per guest id.
	linkErrs sync.Map
}

// newApp serves a Manager on a store with WaitReplicas wait. With identify,
// a request with an X-User header is that real user's, and links its
// guest. Its handler answers "guest ID" for a guest, "user ID" for a real
// user and "none" without either; /login?user=ID links the request's guest
// with Manager.Link.
func newApp(t *testing.T, c redis.UniversalClient, wait int, identify bool) *app {
	return newAppLease(t, c, wait, identify, linkLease)
}

// newAppLease is newApp with a LinkLease of its own.
func newAppLease(t *testing.T, c redis.UniversalClient, wait int, identify bool, lease time.Duration) *app {
	s, err := redisstore.New(c, redisstore.Options{Prefix: failoverPrefix, WaitReplicas: wait})
	if err != nil {
		t.Fatal(err)
	}
	a := &app{wait: wait, store: s, calls: newLinkCalls(), logs: &logCount{n: map[string]int{}, errs: map[string]int{}}}
	o := anonymous.Options{
		Keys: testKeys, CookieInsecure: true, CookieName: "anonymous_guest", Budget: anonymous.Budget{Off: true},
		OnLinkAccount: a.calls.onLink, LinkLease: lease, ErrorLog: slog.New(a.logs),
	}
	if identify {
		o.Identify = func(r *http.Request) (*anonymous.User, error) {
			if id := r.Header.Get("X-User"); id != "" {
				return realUser(id), nil
			}
			return nil, nil
		}
	}
	if a.m, err = anonymous.New(s, o); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch u := anonymous.UserFrom(r.Context()); {
		case u == nil:
			io.WriteString(w, "none")
		case u.IsAnonymous:
			io.WriteString(w, "guest "+u.ID)
		default:
			io.WriteString(w, "user "+u.ID)
		}
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		g := anonymous.UserFrom(r.Context())
		err := a.m.Link(w, r, realUser(r.FormValue("user")))
		if g != nil {
			a.linkErrs.Store(g.ID, linkOutcome{err})
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "linked")
	})
	a.url = serve(t, a.m.Middleware(mux))
	return a
}

type linkOutcome struct{ err error }

func realUser(id string) *anonymous.User {
	return &anonymous.User{ID: id, Name: id, Email: id + "@example.com"}
}

// linkedTo is the real user guest id was linked to: "" while it is a guest,
// "-" when it is gone, "?" when the store does not answer.
func (a *app) linkedTo(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u, err := a.m.LinkedTo(ctx, id)
	switch {
	case errors.Is(err, anonymous.ErrNotFound):
		return "-"
	case err != nil:
		return "?"
	}
	return u
}

// hit is one request's outcome.
type hit struct {
	status     int
	body       string
	cookies    []*http.Cookie
	start, end time.Time
	err        error
}

func (h hit) guest() string {
	id, ok := strings.CutPrefix(h.body, "guest ")
	if h.err != nil || h.status != http.StatusOK || !ok {
		return ""
	}
	return id
}

// send sends a GET to url with cookie (if any; a client with a jar adds its
// own) and, for user, an X-User header. Safe for any goroutine.
func send(hc *http.Client, url string, cookie *http.Cookie, user string) hit {
	h := hit{start: time.Now()}
	defer func() { h.end = time.Now() }()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		h.err = err
		return h
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	if user != "" {
		req.Header.Set("X-User", user)
	}
	resp, err := hc.Do(req)
	if err != nil {
		h.err = err
		return h
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	h.status, h.body, h.cookies, h.err = resp.StatusCode, string(b), resp.Cookies(), err
	h.end = time.Now()
	return h
}

// httpClient is a client without a jar sharing a pool of connections, so
// that thousands of requests do not use thousands of ephemeral ports.
func httpClient(tr http.RoundTripper) *http.Client {
	return &http.Client{Transport: tr, Timeout: requestTimeout}
}

func newTransport(t *testing.T) *http.Transport {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// storedGuest is a guest stored in the topology, with its cookie.
type storedGuest struct {
	id     string
	cookie *http.Cookie
	app    *app
	user   string // the real user it is linked to
}

// newStoredGuests makes n stored guests of a whose keys live where want
// says, each with the cookie its return set: a first visit names the guest
// without storing it, the return stores it.
func newStoredGuests(t *testing.T, hc *http.Client, a *app, n int, want func(id string) bool) []*storedGuest {
	name := a.m.CookieName()
	cookie := func(h hit) *http.Cookie {
		for _, c := range h.cookies {
			if c.Name == name && c.MaxAge > 0 {
				return c
			}
		}
		return nil
	}
	var (
		mu     sync.Mutex
		guests []*storedGuest
		wg     sync.WaitGroup
		failed atomic.Value
	)
	for range 8 {
		wg.Go(func() {
			for tries := 0; tries < 40*n; tries++ {
				mu.Lock()
				done := len(guests) >= n
				mu.Unlock()
				if done {
					return
				}
				first := send(hc, a.url+"/", nil, "")
				id, c := first.guest(), cookie(first)
				if id == "" || c == nil {
					failed.Store(fmt.Sprintf("first visit: %+v", first))
					return
				}
				if !want(id) {
					continue
				}
				back := send(hc, a.url+"/", c, "")
				if back.guest() != id || cookie(back) == nil {
					failed.Store(fmt.Sprintf("return of guest %s: %+v", id, back))
					return
				}
				mu.Lock()
				if len(guests) < n {
					guests = append(guests, &storedGuest{id: id, cookie: cookie(back), app: a, user: "user-" + id})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	if len(guests) < n {
		t.Fatalf("made %d of %d guests where wanted", len(guests), n)
	}
	return guests
}

// browserRun is what one visitor with a cookie jar saw.
type browserRun struct {
	id   string // its own guest
	hc   *http.Client
	hits []hit
}

// steadyVisitors makes n visitors with a cookie jar each and a stored
// guest, onVictim of them with their guest's key on the victim.
func steadyVisitors(t *testing.T, tr http.RoundTripper, a *app, n, onVictim int, isOnVictim func(string) bool) []*browserRun {
	var runs []*browserRun
	for tries := 0; len(runs) < n; tries++ {
		if tries > 40*n {
			t.Fatalf("made %d of %d visitors", len(runs), n)
		}
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Jar: jar, Transport: tr, Timeout: requestTimeout}
		id := send(hc, a.url+"/", nil, "").guest()
		if id == "" {
			t.Fatal("a new visitor got no guest")
		}
		if len(runs) < onVictim && !isOnVictim(id) {
			continue
		}
		if again := send(hc, a.url+"/", nil, "").guest(); again != id {
			t.Fatalf("guest %s came back as %q", id, again)
		}
		runs = append(runs, &browserRun{id: id, hc: hc})
	}
	return runs
}

// traffic runs the visitors' requests from workers goroutines, each
// visitor's one after the other with a short pause, until stop is closed.
// It appends to the runs' hits under mu.
func traffic(runs []*browserRun, url string, workers int, mu *sync.Mutex, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		var mine []*browserRun
		for i := w; i < len(runs); i += workers {
			mine = append(mine, runs[i])
		}
		wg.Go(func() {
			for {
				for _, r := range mine {
					select {
					case <-stop:
						return
					default:
					}
					h := send(r.hc, url+"/", nil, "")
					mu.Lock()
					r.hits = append(r.hits, h)
					mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	return &wg
}

// trafficFigures sums up what the visitors saw around a kill at killed.
type trafficFigures struct {
	requests, afterKill, withoutGuest, replaced, errors int
	// slowestFailOpen is the longest answer without a guest to a request
	// sent after the kill; slowFailOpen lists those over a second, sent
	// after the kill or in flight at it: when, how long.
	slowestFailOpen, recovery time.Duration
	slowFailOpen              []string
	unrecovered               []string
	replacedBy                []string
}

func summarize(runs []*browserRun, killed time.Time) trafficFigures {
	var f trafficFigures
	for _, r := range runs {
		lastBad := -1
		for i, h := range r.hits {
			f.requests++
			after := !h.end.Before(killed)
			if after {
				f.afterKill++
			}
			switch g := h.guest(); {
			case g == r.id:
				continue
			case h.err == nil && h.status == http.StatusOK && h.body == "none":
				if after {
					f.withoutGuest++
					if !h.start.Before(killed) { // not stalled before the kill
						f.slowestFailOpen = max(f.slowestFailOpen, h.end.Sub(h.start))
					}
					if d := h.end.Sub(h.start); d > time.Second {
						f.slowFailOpen = append(f.slowFailOpen, fmt.Sprintf("%v+%v", h.start.Sub(killed).Round(time.Millisecond), d.Round(time.Millisecond)))
					}
				}
			case g != "":
				f.replaced++
				f.replacedBy = append(f.replacedBy, r.id+"→"+g)
			default:
				f.errors++
			}
			if after {
				lastBad = i
			}
		}
		recovered := false
		for _, h := range r.hits[lastBad+1:] {
			if h.guest() == r.id && !h.start.Before(killed) {
				f.recovery = max(f.recovery, h.end.Sub(killed))
				recovered = true
				break
			}
		}
		if !recovered {
			f.unrecovered = append(f.unrecovered, r.id)
		}
	}
	return f
}

// recovered reports whether every visitor has been served its own guest by
// a request that started after its last failure after killed, at least
// settle ago.
func recovered(runs []*browserRun, killed time.Time, settle time.Duration, mu *sync.Mutex) bool {
	mu.Lock()
	defer mu.Unlock()
	for _, r := range runs {
		ok := false
		for i := len(r.hits) - 1; i >= 0; i-- {
			h := r.hits[i]
			if h.end.Before(killed) {
				break
			}
			if h.guest() != r.id {
				break
			}
			if time.Since(h.start) >= settle {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// TestFailoverKillMasterCluster: on a Cluster with two replicas per
// master, the master holding some visitors' and all linking guests' keys
// is killed under traffic, in the middle of a storm of links.
func TestFailoverKillMasterCluster(t *testing.T) {
	redistest.RequireFailover(t)
	killMaster(t, clusterTopo(t, killMasterClusterPorts))
}

// TestFailoverKillMasterSentinel: the same with Sentinel.
func TestFailoverKillMasterSentinel(t *testing.T) {
	redistest.RequireFailover(t)
	killMaster(t, sentinelTopo(t, killMasterSentinelPorts))
}

// killMaster kills tp's victim under steady traffic and a link storm, and
// checks and measures what happens:
//
//   - steady visitors with cookie jars browse throughout: none may get
//     another guest; requests during the failover may be served without
//     one (counted); recovery is when each has been served its own guest
//     again;
//   - a storm of links — guests on the victim, each linked by three
//     concurrent requests naming its real user — runs through an
//     application with WaitReplicas 1 and one without, interleaved; the
//     master is killed from inside an OnLinkAccount call of the first,
//     after its claim was replicated and before its final write. After the
//     failover the logins are sent again until every guest is linked (or
//     gone). With WaitReplicas 1 each guest's callback must have succeeded
//     once, each guest must be linked and its old cookie must not bring it
//     back; without, the figures are only logged.
func killMaster(t *testing.T, tp *failoverTopo) {
	tp.detect(t, patientDetection)
	c := tp.client(t)
	ctx := context.Background()
	measureWaitCost(t, tp, c)

	apps := [2]*app{newApp(t, c, 0, true), newApp(t, c, 1, true)}
	tr := newTransport(t)
	hc := httpClient(tr)
	onVictim := func(id string) bool { return tp.onVictim(ctx, c, failoverPrefix+"{"+id+"}") }

	// Plain visits write nothing, whatever WaitReplicas: the visitors use
	// the first application.
	runs := steadyVisitors(t, tr, apps[0], 24, 8, onVictim)
	const perApp = 100
	var storm []*storedGuest
	guests := [2][]*storedGuest{}
	for i, a := range apps {
		guests[i] = newStoredGuests(t, hc, a, perApp, onVictim)
	}
	for i := range perApp {
		storm = append(storm, guests[1][i], guests[0][i])
	}
	redistest.WaitSynced(t, tp.victim, 2)
	pid := redistest.PID(t, tp.victim)

	var (
		killOnce    sync.Once
		killed      time.Time
		killedGuest string
		killErr     error
		killedCh    = make(chan struct{})
		waitCalls   atomic.Int64
		// calledBefore are the guests whose callback had succeeded when
		// the master died.
		calledBefore [2]map[string]int
	)
	kill := func(id string) {
		if waitCalls.Add(1) != 30 {
			return
		}
		killOnce.Do(func() {
			killed, killedGuest = time.Now(), id
			killErr = redistest.Kill(pid)
			for i, a := range apps {
				calledBefore[i] = a.calls.snapshot()
			}
			close(killedCh)
		})
	}
	apps[1].calls.after.Store(&kill)

	var hitsMu sync.Mutex // guards the runs' hits while traffic runs
	stop := make(chan struct{})
	trafficDone := traffic(runs, apps[0].url, 4, &hitsMu, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		trafficDone.Wait()
	}()
	time.Sleep(500 * time.Millisecond) // traffic before the storm

	// The kill is detected as the script set the topology up to.
	tp.checkMaster(t, tp.victim.Options().Addr, "before the kill")
	tp.detect(t, tp.quick)
	stormStart := time.Now()
	var stormWG sync.WaitGroup
	for j, g := range storm {
		time.Sleep(time.Until(stormStart.Add(time.Duration(j) * 12 * time.Millisecond)))
		for range 3 {
			stormWG.Go(func() { send(hc, g.app.url+"/", g.cookie, g.user) })
		}
	}
	stormWG.Wait()
	select {
	case <-killedCh:
	case <-time.After(10 * time.Second):
		t.Fatalf("the master was not killed: %d successful callbacks with WaitReplicas 1", waitCalls.Load())
	}
	if killErr != nil {
		t.Fatalf("killing the master: %v", killErr)
	}
	t.Logf("storm of %d guests over %v; master killed %v after the storm began, in OnLinkAccount of guest %s",
		len(storm), time.Since(stormStart).Round(time.Millisecond), killed.Sub(stormStart).Round(time.Millisecond), killedGuest)
	redistest.WaitDown(t, tp.victim.Options().Addr)
	newMaster := tp.promoted(t)
	promotedAfter := time.Since(killed)
	t.Logf("%s promoted %v after the kill (seen by polling)", newMaster, promotedAfter.Round(time.Millisecond))
	tp.detect(t, patientDetection)

	// The logins again, until every guest is linked or gone.
	deadline := killed.Add(linkLease + 30*time.Second)
	linkedAt := map[*storedGuest]time.Duration{}
	state := map[*storedGuest]string{}
	pending := slices.Clone(storm)
	for len(pending) > 0 && time.Now().Before(deadline) {
		next := pending[:0]
		for _, g := range pending {
			switch u := g.app.linkedTo(g.id); u {
			case g.user, "-":
				state[g], linkedAt[g] = u, time.Since(killed)
			default:
				next = append(next, g)
			}
		}
		pending = next
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for _, g := range pending {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				send(hc, g.app.url+"/", g.cookie, g.user)
			})
		}
		wg.Wait()
		time.Sleep(200 * time.Millisecond)
	}
	for _, g := range pending {
		state[g] = g.app.linkedTo(g.id)
	}

	// Steady traffic until every visitor is served its own guest again,
	// for a second at least.
	for !recovered(runs, killed, time.Second, &hitsMu) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	trafficDone.Wait()
	tp.checkMaster(t, newMaster, "after the failover")

	tf := summarize(runs, killed)
	t.Logf("failover figures: topology=%s visitors=%d requests=%d after_kill=%d served_without_guest=%d guests_replaced=%d errors=%d slowest_fail_open=%v recovery=%v promoted=%v",
		tp.name, len(runs), tf.requests, tf.afterKill, tf.withoutGuest, tf.replaced, tf.errors,
		tf.slowestFailOpen.Round(time.Millisecond), tf.recovery.Round(time.Millisecond), promotedAfter.Round(time.Millisecond))
	if len(tf.slowFailOpen) > 0 {
		t.Logf("answers without a guest that took over a second (sent when after the kill + how long): %v", tf.slowFailOpen)
	}
	t.Logf("store errors logged by the visitors' application: %v", apps[0].logs.topErrors(5))
	if tf.replaced > 0 {
		t.Errorf("%d requests were served another guest than the visitor's own: %v", tf.replaced, tf.replacedBy)
	}
	if len(tf.unrecovered) > 0 {
		t.Errorf("%d visitors were never served their own guest again after the kill: %v", len(tf.unrecovered), tf.unrecovered)
	}
	if tf.errors > 0 {
		t.Errorf("%d requests failed (not a fail-open answer)", tf.errors)
	}

	for i, a := range apps {
		var linked, gone, notLinked, once, twice, never int
		var doubled, unlinked []string
		var done time.Duration
		var relinked []time.Duration // after the kill, of guests not called back before it
		for _, g := range guests[i] {
			switch n := a.calls.count(g.id); {
			case n == 0:
				never++
			case n == 1:
				once++
			default:
				twice++
				doubled = append(doubled, fmt.Sprintf("%s:%d", g.id, n))
			}
			switch state[g] {
			case g.user:
				linked++
				done = max(done, linkedAt[g])
				if calledBefore[i][g.id] == 0 {
					relinked = append(relinked, linkedAt[g])
				}
			case "-":
				gone++
			default:
				notLinked++
				unlinked = append(unlinked, g.id+"="+state[g])
			}
		}
		slices.Sort(relinked)
		median := time.Duration(0)
		if len(relinked) > 0 {
			median = relinked[len(relinked)/2]
		}
		// Replayed after the link, a guest's old cookie must not bring it back.
		cameBack := 0
		for _, g := range guests[i] {
			if send(hc, a.url+"/", g.cookie, "").guest() == g.id {
				cameBack++
			}
		}
		t.Logf("failover figures: topology=%s WaitReplicas=%d guests=%d linked=%d gone=%d not_linked=%d callbacks_once=%d callbacks_never=%d double_callbacks=%d came_back=%d linked_after_kill=%d median_link_after=%v all_linked_after=%v final_write_failures_logged=%d",
			tp.name, a.wait, len(guests[i]), linked, gone, notLinked, once, never, twice, cameBack,
			len(relinked), median.Round(time.Millisecond), done.Round(time.Millisecond),
			a.logs.count("anonymous: OnLinkAccount succeeded but recording the link failed"))
		if twice > 0 {
			t.Logf("WaitReplicas %d: guests whose OnLinkAccount succeeded more than once: %v (the master died in OnLinkAccount of %s)", a.wait, doubled, killedGuest)
		}
		if a.wait == 0 {
			continue
		}
		if notLinked > 0 || gone > 0 {
			t.Errorf("WaitReplicas 1: %d guests not linked and %d gone after the failover: %v", notLinked, gone, unlinked)
		}
		if cameBack > 0 {
			t.Errorf("WaitReplicas 1: %d linked guests came back with their old cookies", cameBack)
		}
		// The link in OnLinkAccount when the master died had its claim
		// replicated and its final write fail: it must be finished, by
		// itself or a later request, without running the callback again.
		if n := a.calls.count(killedGuest); n != 1 {
			t.Errorf("WaitReplicas 1: the link whose master died during OnLinkAccount (guest %s) ran the callback %d times before it was recorded; want once", killedGuest, n)
		}
		if twice > 0 {
			t.Errorf("WaitReplicas 1: OnLinkAccount succeeded more than once for %d of %d guests: %v; %d links logged that recording them failed after the callback",
				twice, len(guests[i]), doubled, a.logs.count("anonymous: OnLinkAccount succeeded but recording the link failed"))
		}
	}
}

// measureWaitCost logs what a claim and a final write (two Durable
// Updates, which WaitReplicas makes wait) cost with WaitReplicas 1 and
// without, on tp.
func measureWaitCost(t *testing.T, tp *failoverTopo, c redis.UniversalClient) {
	ctx := context.Background()
	var stores [2]*redisstore.Store
	for w := range stores {
		s, err := redisstore.New(c, redisstore.Options{Prefix: failoverPrefix + "cost:", WaitReplicas: w})
		if err != nil {
			t.Fatal(err)
		}
		stores[w] = s
	}
	const n = 200
	var took [2][]time.Duration
	var notReplicated int
	for i := range n + 20 {
		for w, s := range stores {
			id, e := newID(t), entry("a guest")
			if err := s.Create(ctx, id, e); err != nil {
				t.Fatalf("cost: create: %v", err)
			}
			start := time.Now()
			e.Version, e.Value, e.Durable = 1, []byte("its claim"), true
			err := s.Update(ctx, id, e)
			if err == nil {
				e.Version, e.Value = 2, []byte("the record its link leaves")
				err = s.Update(ctx, id, e)
			}
			switch {
			case errors.Is(err, redisstore.ErrNotReplicated):
				notReplicated++
			case err != nil:
				t.Fatalf("cost: update: %v", err)
			case i >= 20: // the first ones warm the connections up
				took[w] = append(took[w], time.Since(start))
			}
		}
	}
	q := func(d []time.Duration, p float64) time.Duration {
		slices.Sort(d)
		return d[int(float64(len(d)-1)*p)]
	}
	t.Logf("failover figures: topology=%s claim+final_write WaitReplicas=0 median=%v p90=%v WaitReplicas=1 median=%v p90=%v not_replicated_in_time=%d of %d",
		tp.name, q(took[0], 0.5), q(took[0], 0.9), q(took[1], 0.5), q(took[1], 0.9), notReplicated, n+20)
}

// TestFailoverLostWriteCluster: on a Cluster, writes that never reached
// the replica that is promoted.
func TestFailoverLostWriteCluster(t *testing.T) {
	redistest.RequireFailover(t)
	lostWrite(t, clusterTopo(t, lostWriteClusterPorts))
}

// TestFailoverLostWriteSentinel: the same with Sentinel.
func TestFailoverLostWriteSentinel(t *testing.T) {
	redistest.RequireFailover(t)
	lostWrite(t, sentinelTopo(t, lostWriteSentinelPorts))
}

// lostWrite forces the lost write: the victim's replicas are cut off from
// it, links run on the victim alone, then the victim is killed and a
// cut-off replica, which has none of those writes, is promoted.
//
//   - guest A1, WaitReplicas 1, linked while the replicas are cut off:
//     its claim is not replicated, so the link fails (ErrNotReplicated)
//     before OnLinkAccount; after the failover it is the guest it was, and
//     a new login links it, the callback running once in all.
//   - guest B1, WaitReplicas 1, whose replicas are cut off while
//     OnLinkAccount runs: its claim was replicated, its final write is
//     not. The link must not report success; whether the guest comes back
//     and whether the callback runs again after the lease is logged.
//   - guest A0, WaitReplicas 0, linked while the replicas are cut off: the
//     link succeeds on the victim alone; whether the guest comes back and
//     the callback runs again is logged.
func lostWrite(t *testing.T, tp *failoverTopo) {
	tp.detect(t, patientDetection)
	c := tp.client(t)
	ctx := context.Background()
	// A link whose last write is not replicated retries it until its lease
	// runs out: a short lease keeps the replicas' cut-off shorter than what
	// Sentinel still promotes a replica after.
	a0, a1 := newApp(t, c, 0, false), newAppLease(t, c, 1, false, 2*time.Second)
	hc := httpClient(newTransport(t))
	onVictim := func(id string) bool { return tp.onVictim(ctx, c, failoverPrefix+"{"+id+"}") }
	g1 := newStoredGuests(t, hc, a1, 2, onVictim)
	gA1, gB1 := g1[0], g1[1]
	gA0 := newStoredGuests(t, hc, a0, 1, onVictim)[0]
	redistest.WaitSynced(t, tp.victim, 2)
	pid := redistest.PID(t, tp.victim)

	login := func(g *storedGuest) hit {
		return send(hc, g.app.url+"/login?user="+url.QueryEscape(g.user), g.cookie, "")
	}
	outcome := func(g *storedGuest) error {
		v, ok := g.app.linkErrs.Load(g.id)
		if !ok {
			return errors.New("no outcome recorded")
		}
		return v.(linkOutcome).err
	}
	cutOff := func(ctx context.Context) error {
		for _, r := range tp.replicas {
			if err := redistest.CutOff(ctx, tp.victim, r); err != nil {
				return err
			}
		}
		return nil
	}

	// B1: the replicas are cut off while its callback runs.
	cutDone := make(chan error, 1)
	cut := func(id string) {
		if id == gB1.id {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cutDone <- cutOff(ctx)
		}
	}
	a1.calls.after.Store(&cut)
	hB1 := login(gB1)
	a1.calls.after.Store(nil)
	select {
	case err := <-cutDone:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("B1: OnLinkAccount did not run, so the replicas were not cut off: %d %q", hB1.status, hB1.body)
	}
	errB1 := outcome(gB1)
	t.Logf("B1 (WaitReplicas 1, cut off during OnLinkAccount): %d %q; link error: %v", hB1.status, hB1.body, errB1)

	// A1 and A0: linked while the replicas are cut off.
	hA1 := login(gA1)
	errA1 := outcome(gA1)
	t.Logf("A1 (WaitReplicas 1, cut off before the link): %d %q; link error: %v", hA1.status, hA1.body, errA1)
	if !errors.Is(errA1, redisstore.ErrNotReplicated) {
		t.Errorf("A1: link while the replicas are cut off: %v, want an error wrapping ErrNotReplicated", errA1)
	}
	if n := a1.calls.count(gA1.id); n != 0 {
		t.Errorf("A1: OnLinkAccount ran %d times for a link whose claim was not replicated", n)
	}
	hA0 := login(gA0)
	errA0 := outcome(gA0)
	t.Logf("A0 (WaitReplicas 0, cut off before the link): %d %q; link error: %v", hA0.status, hA0.body, errA0)

	tp.checkMaster(t, tp.victim.Options().Addr, "before the kill")
	tp.detect(t, tp.quick)
	if err := redistest.Kill(pid); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	redistest.WaitDown(t, tp.victim.Options().Addr)
	for _, r := range tp.replicas {
		if err := redistest.Reconnect(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	newMaster := tp.promoted(t)
	t.Logf("%s promoted %v after the kill", newMaster, time.Since(killed).Round(time.Millisecond))
	tp.detect(t, patientDetection)
	redistest.Poll(t, 30*time.Second, "the client serving again", func(context.Context) error {
		if h := send(hc, a1.url+"/", gA1.cookie, ""); h.body == "none" || h.err != nil {
			return fmt.Errorf("%d %q %v", h.status, h.body, h.err)
		}
		return nil
	})

	// What the old cookies bring back.
	cameBack := map[*storedGuest]bool{}
	for _, g := range []*storedGuest{gA1, gB1, gA0} {
		cameBack[g] = send(hc, g.app.url+"/", g.cookie, "").guest() == g.id
	}
	if !cameBack[gA1] {
		t.Errorf("A1: its link failed before OnLinkAccount, yet its cookie no longer brings it back")
	}

	// The logins again, until each guest is linked (B1's lease runs out
	// first: its claim was replicated).
	deadline := time.Now().Add(linkLease + 20*time.Second)
	for _, g := range []*storedGuest{gA1, gB1, gA0} {
		for g.app.linkedTo(g.id) != g.user && time.Now().Before(deadline) {
			login(g)
			time.Sleep(200 * time.Millisecond)
		}
	}
	tp.checkMaster(t, newMaster, "after the failover")
	for _, g := range []struct {
		name string
		g    *storedGuest
		err  error // the link's outcome before the failover
	}{{"A1", gA1, errA1}, {"B1", gB1, errB1}, {"A0", gA0, errA0}} {
		t.Logf("failover figures: topology=%s lost_write guest=%s WaitReplicas=%d link_reported_success=%v came_back=%v callbacks=%d linked_to=%q",
			tp.name, g.name, g.g.app.wait, g.err == nil, cameBack[g.g], g.g.app.calls.count(g.g.id), g.g.app.linkedTo(g.g.id))
	}
	if n, u := a1.calls.count(gA1.id), a1.linkedTo(gA1.id); n != 1 || u != gA1.user {
		t.Errorf("A1: after the failover OnLinkAccount succeeded %d times and the guest is linked to %q; want once, and linked to %s", n, u, gA1.user)
	}
	// A link whose final write no replica acknowledged is not done: it must
	// not be reported as done, for a failover brings the guest back.
	if !errors.Is(errB1, redisstore.ErrNotReplicated) {
		t.Errorf("B1: Link answered %v for a final write that no replica acknowledged, want an error wrapping ErrNotReplicated; after the failover the guest came back with its old cookie: %v, and OnLinkAccount succeeded %d times",
			errB1, cameBack[gB1], a1.calls.count(gB1.id))
	}
}
