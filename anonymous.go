// Package anonymous gives every visitor of a net/http application a real,
// signed, server-side guest: an anonymous user with a generated email and
// name and a session, kept in a Store (in memory or in Redis). When the
// visitor later logs in with a real account, by any method, the package runs
// the application's OnLinkAccount callback exactly once (move the cart, the
// draft, the preferences) and deletes the guest.
//
// It is the Go counterpart of Better Auth's anonymous plugin, and its JSON
// endpoints speak the same wire format, so the npm better-auth client with
// anonymousClient() works against a Go server unchanged.
//
// A complete program:
//
//	package main
//
//	import (
//		"fmt"
//		"log"
//		"net/http"
//
//		"github.com/guestpass/anonymous"
//		"github.com/guestpass/anonymous/memstore"
//	)
//
//	func main() {
//		store := memstore.New()
//		defer store.Close()
//
//		guests, err := anonymous.New(store, anonymous.Options{
//			Keys: []anonymous.Key{{Hash: []byte("a-32-byte-long-hmac-key-for-demo")}},
//		})
//		if err != nil {
//			log.Fatal(err)
//		}
//
//		mux := http.NewServeMux()
//		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
//			if u := anonymous.UserFrom(r.Context()); u != nil {
//				fmt.Fprintf(w, "Hello, %s (%s)\n", u.Name, u.ID)
//			}
//		})
//		log.Fatal(http.ListenAndServe(":8080", guests.Middleware(mux)))
//	}
//
// The middleware serves the JSON endpoints under Options.BasePath itself.
// It needs no response buffering and wraps no ResponseWriter, so
// http.Flusher, http.Hijacker, server-sent events and WebSockets keep working.
package anonymous

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ErrInvalidOptions is wrapped by every error New returns for bad Options.
var ErrInvalidOptions = errors.New("anonymous: invalid options")

// User is a user as the application and the wire see it. Guests are the only
// users this package creates and stores; real users belong to the
// application, which hands them over through Options.Identify or
// Manager.Link.
//
// Its JSON form matches Better Auth's: timestamps are RFC 3339 in UTC with
// milliseconds.
type User struct {
	ID            string
	Email         string
	EmailVerified bool
	Name          string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// IsAnonymous is true for guests and false for real users.
	IsAnonymous bool
}

// Session is a guest's session. Token is the guest's credential: the cookie
// carries it, signed, and a client without cookies may send it as
// "Authorization: Bearer <token>". Stores never hold it in plaintext.
type Session struct {
	ID        string
	Token     string
	UserID    string
	ExpiresAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
	IPAddress string
	UserAgent string
}

// wireTime is the wire's timestamp: RFC 3339, UTC, milliseconds.
const wireTime = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON writes timestamps as RFC 3339 in UTC with milliseconds.
func (u User) MarshalJSON() ([]byte, error) {
	type wire struct {
		ID            string `json:"id"`
		Email         string `json:"email"`
		EmailVerified bool   `json:"emailVerified"`
		Name          string `json:"name"`
		CreatedAt     string `json:"createdAt"`
		UpdatedAt     string `json:"updatedAt"`
		IsAnonymous   bool   `json:"isAnonymous"`
	}
	return json.Marshal(wire{
		ID: u.ID, Email: u.Email, EmailVerified: u.EmailVerified, Name: u.Name,
		CreatedAt: wireFormat(u.CreatedAt), UpdatedAt: wireFormat(u.UpdatedAt), IsAnonymous: u.IsAnonymous,
	})
}

// MarshalJSON writes timestamps as RFC 3339 in UTC with milliseconds.
func (s Session) MarshalJSON() ([]byte, error) {
	type wire struct {
		ID        string `json:"id"`
		Token     string `json:"token"`
		UserID    string `json:"userId"`
		ExpiresAt string `json:"expiresAt"`
		CreatedAt string `json:"createdAt"`
		UpdatedAt string `json:"updatedAt"`
		IPAddress string `json:"ipAddress"`
		UserAgent string `json:"userAgent"`
	}
	return json.Marshal(wire{
		ID: s.ID, Token: s.Token, UserID: s.UserID, ExpiresAt: wireFormat(s.ExpiresAt),
		CreatedAt: wireFormat(s.CreatedAt), UpdatedAt: wireFormat(s.UpdatedAt),
		IPAddress: s.IPAddress, UserAgent: s.UserAgent,
	})
}

func wireFormat(t time.Time) string { return t.UTC().Format(wireTime) }

// Persist chooses when a freshly issued guest is written to the store.
type Persist int

const (
	// PersistOnReturn, the default, writes nothing on a visitor's first
	// request: the cookie carries the whole new guest, signed. The guest is
	// stored when the browser sends the cookie back, proving it keeps
	// cookies, so crawlers and one-hit visitors cost no store write.
	PersistOnReturn Persist = iota
	// PersistOnIssue writes the guest to the store on the first request.
	PersistOnIssue
)

// StoreErrorPolicy chooses what the middleware does when the store fails.
type StoreErrorPolicy int

const (
	// FailOpen, the default, serves the request without a guest and keeps
	// the visitor's cookie untouched, so the guest comes back with the store.
	FailOpen StoreErrorPolicy = iota
	// FailClosed answers 503 Service Unavailable, cookie untouched.
	FailClosed
)

// Account is a user with its session, as OnLinkAccount sees it.
type Account struct {
	User *User
	// Session is the guest's session for the anonymous side. For the new
	// user it is nil: real sessions belong to the application.
	Session *Session
}

// LinkEvent is what OnLinkAccount receives: the guest and the real user it
// becomes, and the guest's data (see Manager.UpdateData) to merge into the
// account.
type LinkEvent struct {
	AnonymousUser Account
	NewUser       Account
	// Data is the guest's data, nil for none. The callback owns it.
	Data []byte
}

// DeleteReason tells why a guest was deleted.
type DeleteReason int

const (
	// DeletedByVisitor: the delete-anonymous-user endpoint.
	DeletedByVisitor DeleteReason = iota + 1
	// DeletedByLink: the guest became a real user (OnLinkAccount ran).
	DeletedByLink
	// DeletedByApplication: Manager.DeleteGuest.
	DeletedByApplication
)

// DefaultMaxDataSize is Options.MaxDataSize's default.
const DefaultMaxDataSize = 4 << 10

// DefaultCookieName is the guest cookie's name when Options.CookieName is
// empty and the cookie is Secure, host-only and at Path "/".
const DefaultCookieName = "__Host-anonymous_guest"

// Key is one cookie key pair.
type Key struct {
	// Hash signs cookies with HMAC-SHA256: 32 or 64 random bytes.
	Hash []byte
	// Block, when set, encrypts cookies with AES: 16, 24 or 32 random
	// bytes, not the hash key. Nil: cookies are signed, not encrypted (they
	// hold nothing secret but the token, which a signature protects).
	Block []byte
}

// Options configures a Manager. The zero value is a working configuration
// (with random keys: see Keys).
type Options struct {
	// EmailDomainName, when set, makes generated emails temp-{id}@{domain}.
	// Default: empty, giving temp@{id}.com.
	EmailDomainName string
	// GenerateRandomEmail, when set, generates guests' emails and
	// EmailDomainName is ignored. The result must be a bare address
	// (net/mail); anything else is ErrInvalidEmail and no guest is created.
	// It is stored lower-cased. The function owns uniqueness. Default: nil.
	GenerateRandomEmail func(ctx context.Context) (string, error)
	// GenerateName, when set and returning a non-empty string, names guests.
	// Default: nil, giving "Anonymous".
	GenerateName func(ctx context.Context) string
	// OnLinkAccount runs, exactly once per guest, when a guest becomes a real
	// user: move the cart, the drafts, the preferences here. An error keeps
	// the guest intact and the link is retried on the guest's next request.
	// Its context ends before LinkLease runs out. Exactly once holds while the store
	// answers; should the store fail after the callback succeeded, the guest
	// is held for its remaining life, and if even that fails the link may run
	// again after LinkLease: make the callback safe to repeat for a pair.
	// Default: nil (the guest is deleted with nothing moved).
	OnLinkAccount func(ctx context.Context, ev LinkEvent) error
	// OnGuestDeleted runs after a guest was deleted, with why: so that the
	// application drops what it keeps about the guest elsewhere. A guest
	// that expires has no event: keep per-guest state in the guest's data
	// (Manager.UpdateData), which expires with it, or give it the same
	// expiry. It runs on the request that deleted the guest; errors are the
	// application's to log. Default: nil.
	OnGuestDeleted func(ctx context.Context, u *User, reason DeleteReason)
	// MaxDataSize bounds a guest's data (Manager.UpdateData), in bytes: it is
	// read on each of the guest's requests and kept for its whole life.
	// Default: DefaultMaxDataSize (4 KiB), enough for a cart of a few dozen
	// lines.
	MaxDataSize int
	// DisableDeleteAnonymousUser turns off the delete-anonymous-user endpoint
	// and, on a link, keeps the guest's user record (marked as linked, its
	// session revoked) instead of deleting it. Default: false.
	DisableDeleteAnonymousUser bool

	// Identify tells the middleware who the real user of a request is, or
	// nil when nobody is logged in; typically from the application's own
	// auth cookie. It runs on every request that is not skipped, so keep it
	// cheap. A request with a guest cookie and a real user links the guest.
	// A real user without a guest is never issued one. Default: nil (every
	// visitor is a guest; link with Manager.Link).
	Identify func(r *http.Request) (*User, error)

	// CookieName is the guest cookie's name. Default: DefaultCookieName
	// ("__Host-anonymous_guest") for a Secure, host-only cookie with Path
	// "/", which no other host of the domain can set or shadow; otherwise
	// "anonymous_guest". Set it to "anonymous_guest" to keep the cookies
	// issued before the prefix became the default. A "__Host-" or
	// "__Secure-" name must meet its prefix's rules.
	CookieName string
	// CookieDomain is the cookie's Domain attribute. Default: empty (host-only).
	CookieDomain string
	// CookiePath is the cookie's Path attribute. Default: "/".
	CookiePath string
	// CookieInsecure drops the Secure attribute. Default: false (Secure),
	// which browsers honour on https and on http://localhost. Set it only
	// for plain-HTTP development on other hosts.
	CookieInsecure bool
	// CookieSameSite is the cookie's SameSite attribute. Default:
	// http.SameSiteLaxMode.
	CookieSameSite http.SameSite

	// Keys are the cookie key pairs, newest first. New cookies use the
	// first; any of them decodes, which is how keys rotate. Default: one
	// random sign-only key, with a warning that cookies will not survive a
	// restart. Recommended: a random 32-byte hash key from a secret store.
	Keys []Key

	// Lifetime is how long a guest lives without a visit; each visit slides
	// it (see RefreshAfter). Default: 30 days.
	Lifetime time.Duration
	// RefreshAfter is how old a guest's expiry may get before a visit moves
	// it: the only store write on a returning guest's path. Default: 1 day
	// (capped at Lifetime).
	RefreshAfter time.Duration
	// Persist chooses when a new guest is written. Default: PersistOnReturn.
	Persist Persist
	// Budget bounds how many guests one client may have stored. Over it, a
	// new visitor's guest lives in its first-visit cookie until the budget
	// allows storing it, and sign-in/anonymous answers 429. Default: on,
	// 100 an hour with a burst of 20 per IPv4 address or IPv6 /64 (see
	// Budget).
	Budget Budget
	// FirstVisitWindow is how long a first visit's cookie, which carries a
	// guest not stored yet (PersistOnReturn), can store it: a visitor who
	// returns later gets a new guest. The cookie is single-use: storing the
	// guest gives it a new token, so a copy of the cookie planted in another
	// browser stops working. Default: 1 hour (capped at Lifetime).
	FirstVisitWindow time.Duration
	// OnStoreError chooses what happens when the store fails. Default:
	// FailOpen.
	OnStoreError StoreErrorPolicy
	// LinkLease bounds how long a link may hold its claim on a guest; a
	// claim left by a crashed process is taken over after it.
	// OnLinkAccount's context ends a fifth of LinkLease before the lease
	// does, leaving the link time to confirm it. Keep it well above what the
	// callback takes. Default: 1 minute.
	LinkLease time.Duration

	// Skip, when it returns true, makes the middleware pass the request
	// through untouched: no cookie read or written, no store access (static
	// files, health checks). Default: nil.
	Skip func(r *http.Request) bool
	// ErrorLog receives store failures and callback errors. Default:
	// slog.Default().
	ErrorLog *slog.Logger
	// BasePath is where the JSON endpoints are served, by the middleware
	// and by Handler. Default: "/api/auth".
	BasePath string
	// MeterProvider receives the package's metrics (see the README's
	// Observability section). Default: otel.GetMeterProvider(), a no-op
	// until the application sets one.
	MeterProvider metric.MeterProvider
	// TracerProvider receives spans of links, and of store calls made for a
	// request whose span is recording. Default: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// TrustedOrigins are origins (scheme://host[:port]) allowed to make
	// cross-site POSTs to the endpoints. Default: none (same origin only).
	TrustedOrigins []string
}

// Manager issues, loads and links guests. Create it with New. It is safe for
// concurrent use.
type Manager struct {
	store       Store
	opts        Options
	cc          *cookieCodec
	cookieAttrs string // "; Path=/; HttpOnly; Secure; SameSite=Lax" and the like
	log         *slog.Logger
	api         *api // the JSON endpoints, built once by New
	// fullLogged is when "the store is full" was last logged, Unix seconds.
	fullLogged atomic.Int64
	metrics    *metrics
}

// CookieName returns the guest cookie's name (see Options.CookieName).
func (m *Manager) CookieName() string { return m.opts.CookieName }

// New checks opts, fills in defaults and returns a Manager on store. It
// reports every configuration error now rather than on the first request.
func New(store Store, opts Options) (*Manager, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalidOptions)
	}
	o, err := parseOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	o.Budget = budgetDefaults(o.Budget, store)
	cc, err := newCookieCodec(o.CookieName, o.Keys)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	mt, err := newMetrics(o.MeterProvider, o.TracerProvider)
	if err != nil {
		return nil, fmt.Errorf("anonymous: metrics: %w", err)
	}
	m := &Manager{store: newObservedStore(store, mt), opts: o, cc: cc, cookieAttrs: cookieAttributes(&o), log: o.ErrorLog, metrics: mt}
	if m.api, err = newAPI(m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return m, nil
}

// parseOptions fills in opts' defaults and checks every field but the keys,
// which newCookieCodec checks.
func parseOptions(o Options) (Options, error) {
	if o.Lifetime < 0 || o.RefreshAfter < 0 || o.LinkLease < 0 || o.FirstVisitWindow < 0 || o.MaxDataSize < 0 {
		return o, errors.New("negative Lifetime, RefreshAfter, LinkLease, FirstVisitWindow or MaxDataSize")
	}
	o.MaxDataSize = cmp.Or(o.MaxDataSize, DefaultMaxDataSize)
	if b := o.Budget; b.Rate < 0 || b.Burst < 0 || b.Period < 0 {
		return o, errors.New("negative Budget.Rate, Budget.Burst or Budget.Period")
	}
	o.Lifetime = cmp.Or(o.Lifetime, 30*24*time.Hour)
	if o.Lifetime < time.Second {
		return o, fmt.Errorf("Lifetime %v is under a second", o.Lifetime)
	}
	o.RefreshAfter = min(cmp.Or(o.RefreshAfter, 24*time.Hour), o.Lifetime)
	o.LinkLease = cmp.Or(o.LinkLease, time.Minute)
	o.FirstVisitWindow = min(cmp.Or(o.FirstVisitWindow, time.Hour), o.Lifetime)
	if o.Persist != PersistOnReturn && o.Persist != PersistOnIssue {
		return o, fmt.Errorf("unknown Persist %d", o.Persist)
	}
	if o.OnStoreError != FailOpen && o.OnStoreError != FailClosed {
		return o, fmt.Errorf("unknown OnStoreError %d", o.OnStoreError)
	}
	o.CookiePath = cmp.Or(o.CookiePath, "/")
	if o.CookieName == "" {
		o.CookieName = "anonymous_guest"
		if !o.CookieInsecure && o.CookieDomain == "" && o.CookiePath == "/" {
			o.CookieName = DefaultCookieName
		}
	}
	o.CookieSameSite = cmp.Or(o.CookieSameSite, http.SameSiteLaxMode)
	if err := validCookie(&o); err != nil {
		return o, err
	}
	o.BasePath = cmp.Or(o.BasePath, "/api/auth")
	if !strings.HasPrefix(o.BasePath, "/") {
		return o, fmt.Errorf("BasePath %q must start with /", o.BasePath)
	}
	o.BasePath = strings.TrimRight(o.BasePath, "/")
	if o.EmailDomainName != "" {
		if _, err := mail.ParseAddress("temp@" + o.EmailDomainName); err != nil {
			return o, fmt.Errorf("EmailDomainName %q: %w", o.EmailDomainName, err)
		}
	}
	if o.ErrorLog == nil {
		o.ErrorLog = slog.Default()
	}
	if len(o.Keys) == 0 {
		o.Keys = []Key{{Hash: randomBytes(32)}}
		o.ErrorLog.Warn("anonymous: no Keys set; using random keys, so guest cookies will not survive a restart")
	}
	return o, nil
}

// validCookie checks the cookie's name, domain, path and SameSite, which the
// middleware writes as they are.
func validCookie(o *Options) error {
	c := http.Cookie{Name: o.CookieName, Value: "v", Domain: o.CookieDomain}
	if err := c.Valid(); err != nil {
		return fmt.Errorf("cookie: %w", err)
	}
	for _, r := range o.CookiePath {
		if r < 0x20 || r == 0x7f || r == ';' {
			return fmt.Errorf("CookiePath %q holds a control character or ';'", o.CookiePath)
		}
	}
	if o.CookieSameSite == http.SameSiteNoneMode && o.CookieInsecure {
		return errors.New("SameSite=None cookies must be Secure")
	}
	if (strings.HasPrefix(o.CookieName, "__Secure-") || strings.HasPrefix(o.CookieName, "__Host-")) && o.CookieInsecure {
		return fmt.Errorf("cookie %q must be Secure", o.CookieName)
	}
	if strings.HasPrefix(o.CookieName, "__Host-") && (o.CookieDomain != "" || o.CookiePath != "/") {
		return fmt.Errorf("cookie %q must have no Domain and Path /", o.CookieName)
	}
	return nil
}
