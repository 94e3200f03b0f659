package anonymous

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Errors of the abuse budget.
var (
	// ErrOverBudget is returned when a client has stored as many guests as
	// its Budget allows for now. Nothing was stored.
	ErrOverBudget = errors.New("anonymous: the client's guest budget is spent for now")
	// ErrStoreFull is returned by a Store that holds as many guests as it
	// may (memstore's MaxGuests). The Manager then stores no new guest but
	// those that logins link (memstore keeps headroom for them) and fails
	// open: visitors keep guests, and their data, in their cookies;
	// sign-in/anonymous answers 503 STORE_FULL.
	ErrStoreFull = errors.New("anonymous: the store is full")
)

// Budget bounds how many guests one client may have stored, so that no
// client can fill the store: a script with a cookie jar, or one calling
// sign-in/anonymous in a loop, stores at most Burst guests at once and Rate
// per Period after that. A visitor whose guest is stored is never affected;
// a new visitor over the budget still gets a guest, carried in its
// first-visit cookie with its data and stored when the budget allows, and
// links with it at login (see Options.Budget).
type Budget struct {
	// Rate guests per Period may be stored by one client, after a Burst.
	// Defaults: 100 per hour, with a burst of 20: far above what a person
	// does (a guest per browser), and under the 30 to 100 an hour per
	// address of comparable services, while a campus or an office behind
	// one address still gets a guest every 36 s after its first twenty.
	Rate   int
	Period time.Duration
	Burst  int
	// Off turns the budget off. Default: false.
	Off bool
	// Client names a request's client. Default: ClientAddr of RemoteAddr,
	// an IPv4 address or an IPv6 /64. Behind a proxy, name the client from
	// the header the proxy sets, and only from a proxy you trust; pass it
	// through ClientAddr, since the name is a key the limiter keeps: a raw
	// header would let a client choose its length and get a fresh budget
	// with each new spelling.
	Client func(r *http.Request) string
	// Limiter keeps the budgets. Default: the store's own when it is a
	// Limiter (redisstore's: shared by every instance of the application),
	// else one in this process's memory, for at most MaxClients clients.
	Limiter Limiter
}

// MaxClients bounds the clients the in-memory limiter remembers; past it,
// the client seen least recently is forgotten (and starts afresh).
const MaxClients = 100_000

// Limiter keeps the clients' budgets. It must be safe for concurrent use.
type Limiter interface {
	// Allow takes one guest from client's budget b and returns 0, or, when
	// the budget has none left, how long until it has one again; it takes
	// nothing then.
	Allow(ctx context.Context, client string, b Budget) (retryAfter time.Duration, err error)
}

// ClientAddr names the client at addr ("host:port" or a bare address):
// the address for IPv4, its /64 prefix for IPv6, where one household or
// host usually holds a whole /64; "" when addr is no address.
func ClientAddr(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return ""
		}
		a = ap.Addr()
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// budgetDefaults fills in b's defaults.
func budgetDefaults(b Budget, store Store) Budget {
	b.Rate = cmp.Or(b.Rate, 100)
	b.Period = cmp.Or(b.Period, time.Hour)
	b.Burst = cmp.Or(b.Burst, 20)
	if b.Client == nil {
		b.Client = func(r *http.Request) string { return ClientAddr(r.RemoteAddr) }
	}
	if b.Limiter == nil {
		if l, ok := store.(Limiter); ok {
			b.Limiter = l
		} else {
			b.Limiter = newMemLimiter(MaxClients)
		}
	}
	return b
}

// charge takes one guest from client's budget and returns 0, or, when the
// budget has none left, how long until it has one again (it takes nothing
// then, and the refusal is counted). A limiter that fails lets the guest be
// stored: the budget guards memory, not access.
func (m *Manager) charge(ctx context.Context, client string) time.Duration {
	wait, err := m.opts.Budget.Limiter.Allow(ctx, client, m.opts.Budget)
	switch {
	case err != nil:
		m.log.WarnContext(ctx, "anonymous: guest budget check failed; storing the guest", "client", client, "err", err)
		return 0
	case wait > 0:
		m.metrics.refused.Add(ctx, 1, m.metrics.refusedBy["budget"]...)
	}
	return wait
}

// mayLink takes one guest from the budget of the account newUser, for a
// link that stores a guest never stored: the same Rate, Period and Burst as
// a client's, so that an account is not a way round its clients' budgets
// (a script that sends fresh first-visit cookies with its login). A person
// links a guest per browser. Over it, the guest is not linked now, and
// stays in its cookie, linked on a later request; a warning says so.
func (m *Manager) mayLink(r *http.Request, newUser *User) bool {
	if m.opts.Budget.Off {
		return true
	}
	if wait := m.charge(r.Context(), "account:"+newUser.ID); wait > 0 {
		m.log.WarnContext(r.Context(), "anonymous: the account has linked its budget of guests not yet stored; this one is linked later",
			"user", newUser.ID, "retry_after", wait)
		return false
	}
	return true
}

// storeNew stores a new guest after the budget of r's client allows it,
// else answers ErrOverBudget with how long to wait; source says what stores
// it, for the metrics. A link's store is not charged to the client (see
// mayLink).
func (m *Manager) storeNew(r *http.Request, rec *Record, source string) (time.Duration, error) {
	ctx := r.Context()
	if b := &m.opts.Budget; source != sourceLink && !b.Off {
		if wait := m.charge(ctx, b.Client(r)); wait > 0 {
			return wait, ErrOverBudget
		}
	}
	err := m.create(ctx, rec)
	switch {
	case err == nil:
		m.metrics.stored.Add(ctx, 1, m.metrics.storedBy[source]...)
	case errors.Is(err, ErrStoreFull):
		m.metrics.refused.Add(ctx, 1, m.metrics.refusedBy["store_full"]...)
		now, last := time.Now().Unix(), m.fullLogged.Load()
		if now-last >= 60 && m.fullLogged.CompareAndSwap(last, now) {
			m.log.ErrorContext(ctx, "anonymous: the store is full; new guests live in their cookies until it has room (logged once a minute)")
		}
	}
	return 0, err
}

// notStored reports whether err from storeNew leaves the guest unstored but
// the request fine: over budget, or a full store.
func notStored(err error) bool { return errors.Is(err, ErrOverBudget) || errors.Is(err, ErrStoreFull) }

// memLimiter keeps budgets in memory, for at most max clients.
type memLimiter struct {
	mu    sync.Mutex
	max   int
	byKey map[string]*list.Element
	lru   list.List // of *memClient, most recent first
}

type memClient struct {
	key string
	lim *rate.Limiter
}

func newMemLimiter(max int) *memLimiter {
	return &memLimiter{max: max, byKey: make(map[string]*list.Element)}
}

func (l *memLimiter) Allow(_ context.Context, client string, b Budget) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.byKey[client]
	if e == nil {
		if l.lru.Len() >= l.max {
			old := l.lru.Remove(l.lru.Back()).(*memClient)
			delete(l.byKey, old.key)
		}
		c := &memClient{key: client, lim: rate.NewLimiter(rate.Every(b.Period/time.Duration(b.Rate)), b.Burst)}
		e = l.lru.PushFront(c)
		l.byKey[client] = e
	} else {
		l.lru.MoveToFront(e)
	}
	res := e.Value.(*memClient).lim.Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return d, nil
	}
	return 0, nil
}
