package anonymous

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Budget bounds how many guests one client may have stored, so that no
// client can fill the store: a script with a cookie jar, one calling
// sign-in/anonymous in a loop, or one spread over a whole block of
// addresses. A new stored guest is charged to every level of its client's
// address at once, all or none; a client over any of them stores nothing
// for now. A visitor whose guest is stored is never affected; a new visitor
// over the budget still gets a guest, carried in its first-visit cookie
// with its data and stored when the budget allows, and links with it at
// login: so strict levels cost honest visitors nothing but a store write
// later.
type Budget struct {
	// Levels are the budgets a new stored guest is charged to. Default:
	// DefaultLevels, per IPv6 /64, /56 and /48 and per IPv4 address.
	Levels []Level
	// Off turns the budget off. Default: false.
	Off bool
	// Client names a request's client by its address. Default: the address
	// of RemoteAddr. Behind a proxy, name the client from the header the
	// proxy sets, and only from a proxy you trust, through ClientAddr. An
	// address that embeds an IPv4 address (IPv4-mapped, 6to4, Teredo) is
	// charged as that IPv4 address; an invalid address is charged to the
	// levels' "unknown" client, all such requests together. Even with Off,
	// the address is the session's IPAddress, and a first visit's sibling
	// requests must come from the client that stored the guest (see
	// docs/first-visit.md).
	Client func(r *http.Request) netip.Addr
	// Limiter keeps the budgets. Default: the store's own when it is a
	// Limiter (redisstore's: shared by every instance of the application),
	// else one in this process's memory.
	Limiter Limiter
}

// Level is one budget: the clients whose addresses share a prefix share it.
// Its budget is Burst guests at once, then Rate per Period.
type Level struct {
	// By names what shares the budget: "ipv6/N" (an IPv6 prefix of N bits,
	// 16 to 128), "ipv4/N" (an IPv4 prefix, 8 to 32), or "site" (every
	// client: a ceiling on the new guests the whole site stores).
	By     string
	Burst  int           // guests at once
	Rate   int           // guests per Period once the burst is spent
	Period time.Duration // the span of Rate
}

// DefaultLevels are Budget.Levels' default. One household or host usually
// holds an IPv6 /64 and a customer of a provider a /56; a /48 is free from
// tunnel brokers and common at hosting providers, so a script that hops
// over 65,536 /64s of one /48 still stores only the /48's 200 at once. An
// IPv4 address is often a whole office, campus or carrier NAT: its 20 at
// once, then one every 36 s, are far above what a person does (a guest per
// browser). Mobile carriers may give many subscribers one /48: past its
// 200, their new visitors keep their guests in their cookies until the
// budget refills. An "ipv4/24" level is available, off by default (a /24
// is often many unrelated customers).
func DefaultLevels() []Level {
	return []Level{
		{By: "ipv6/64", Burst: 20, Rate: 100, Period: time.Hour},
		{By: "ipv6/56", Burst: 50, Rate: 300, Period: time.Hour},
		{By: "ipv6/48", Burst: 200, Rate: 1000, Period: time.Hour},
		{By: "ipv4/32", Burst: 20, Rate: 100, Period: time.Hour},
	}
}

// Charge is one budget a guest is charged to: a level, for one prefix.
type Charge struct {
	// Key names the budget: the level and the prefix, such as
	// "ipv6/48 2001:db8:1::/48", "site", or "account alice".
	Key   string
	Level Level // the budget's size
}

// Limiter keeps the budgets. It must be safe for concurrent use.
type Limiter interface {
	// Take takes one guest from the budget of every charge, all or none:
	// it returns 0 when it took them, or, when one has none left, how long
	// until every one has a guest again, taking nothing. The first
	// charge's level is the finest, the last the coarsest.
	Take(ctx context.Context, charges []Charge) (retryAfter time.Duration, err error)
	// Refund gives back the guest Take took from every charge, for a guest
	// that was not stored after all (a sibling request of the same page
	// stored it first).
	Refund(ctx context.Context, charges []Charge) error
}

// ClientAddr parses the client's address from addr ("host:port" or a bare
// address, as RemoteAddr or a proxy's header holds it); the zero Addr when
// addr is no address.
func ClientAddr(addr string) netip.Addr {
	// A failed parse costs an allocation: try the form addr has first.
	if strings.HasPrefix(addr, "[") || strings.Count(addr, ":") == 1 {
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			return ap.Addr().WithZone("")
		}
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("")
}

// embeddedIPv4 returns the IPv4 address a carries, if any: itself,
// IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002:aabb:ccdd::/48) or Teredo
// (2001:0::/32, the client's public address, inverted, in the last 32
// bits). Such an address is charged as that IPv4 address, so that one IPv4
// address does not get 65,536 IPv6 budgets.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if a.Is4() || a.Is4In6() {
		return a.Unmap(), true
	}
	b := a.As16()
	switch {
	case b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0:
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), true
	}
	return a, false
}

// charges returns what a new guest of the client at a is charged to,
// finest first.
func (b *Budget) charges(a netip.Addr) []Charge {
	if a4, ok := embeddedIPv4(a); ok {
		a = a4
	}
	cs := make([]Charge, 0, len(b.Levels))
	for _, l := range b.Levels {
		fam, bits := l.family()
		switch {
		case fam == "site":
			cs = append(cs, Charge{Key: "site", Level: l})
		case !a.IsValid():
			cs = append(cs, Charge{Key: l.By + " unknown", Level: l})
		case fam == "ipv4" && a.Is4(), fam == "ipv6" && a.Is6():
			p, _ := a.Prefix(bits)
			cs = append(cs, Charge{Key: l.By + " " + p.String(), Level: l})
		}
	}
	return cs
}

// family parses l.By: "ipv4", "ipv6" or "site", and the prefix's bits.
func (l Level) family() (string, int) {
	fam, n, _ := strings.Cut(l.By, "/")
	bits, _ := strconv.Atoi(n)
	return fam, bits
}

// check reports what is wrong with l, if anything.
func (l Level) check() error {
	fam, bits := l.family()
	ok := fam == "site" && l.By == "site" ||
		fam == "ipv4" && 8 <= bits && bits <= 32 && l.By == fam+"/"+strconv.Itoa(bits) ||
		fam == "ipv6" && 16 <= bits && bits <= 128 && l.By == fam+"/"+strconv.Itoa(bits)
	switch {
	case !ok:
		return fmt.Errorf("Budget level %q: By is not ipv4/8..32, ipv6/16..128 or site", l.By)
	case l.Burst < 1 || l.Rate < 1 || l.Period <= 0:
		return fmt.Errorf("Budget level %q: Burst, Rate and Period must be positive", l.By)
	}
	return nil
}

// budgetDefaults fills in b's defaults.
func budgetDefaults(b Budget, store Store) Budget {
	if b.Levels == nil {
		b.Levels = DefaultLevels()
	}
	if b.Client == nil {
		b.Client = func(r *http.Request) netip.Addr { return ClientAddr(r.RemoteAddr) }
	}
	if b.Limiter == nil {
		if l, ok := store.(Limiter); ok {
			b.Limiter = l
		} else {
			b.Limiter = newMemLimiter(maxClients)
		}
	}
	return b
}

// charge takes one guest from every budget of charges and returns 0, or,
// when one has none left, how long until they all have one again (it
// takes nothing then, and the refusal is counted and logged, at most once
// a minute). A limiter that fails lets the guest be stored: the budget
// guards memory, not access.
func (m *Manager) charge(ctx context.Context, charges []Charge) time.Duration {
	wait, err := m.opts.Budget.Limiter.Take(ctx, charges)
	switch {
	case err != nil:
		m.log.WarnContext(ctx, "anonymous: guest budget check failed; storing the guest", "client", charges[0].Key, "err", err)
		return 0
	case wait > 0:
		m.metrics.refused.Add(ctx, 1, m.metrics.refusedBy["budget"]...)
		n := m.refusedCount.Add(1)
		if now, last := time.Now().Unix(), m.refusedLogged.Load(); now-last >= 60 && m.refusedLogged.CompareAndSwap(last, now) {
			m.refusedCount.Add(-n)
			m.log.WarnContext(ctx, "anonymous: clients over their guest budget keep their guests in their cookies (logged once a minute)",
				"client", charges[0].Key, "refused", n)
		}
	}
	return wait
}

// refund gives back what charge took, for a guest not stored after all.
func (m *Manager) refund(ctx context.Context, charges []Charge) {
	if err := m.opts.Budget.Limiter.Refund(ctx, charges); err != nil {
		m.log.WarnContext(ctx, "anonymous: guest budget refund failed", "client", charges[0].Key, "err", err)
	}
}

// mayLink takes one guest from the budget of the account newUser, for a
// link that stores a guest never stored: the finest level's Burst, Rate and
// Period, so that an account is not a way round its clients' budgets (a
// script that sends fresh first-visit cookies with its login). A person
// links a guest per browser. Over it, the guest is not linked now, and
// stays in its cookie, linked on a later request; a warning says so.
func (m *Manager) mayLink(r *http.Request, newUser *User) bool {
	b := &m.opts.Budget
	if b.Off || len(b.Levels) == 0 {
		return true
	}
	l := b.Levels[0]
	l.By = "account"
	if wait := m.charge(r.Context(), []Charge{{Key: "account " + newUser.ID, Level: l}}); wait > 0 {
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
	var charges []Charge
	if b := &m.opts.Budget; source != sourceLink && !b.Off && len(b.Levels) > 0 {
		charges = b.charges(m.clientAddr(r))
		if wait := m.charge(ctx, charges); wait > 0 {
			return wait, ErrOverBudget
		}
	}
	err := m.create(ctx, rec)
	if err != nil && charges != nil && (errors.Is(err, ErrExists) || errors.Is(err, ErrStoreFull)) {
		m.refund(ctx, charges) // a sibling stored it first, or nothing was stored
	}
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
