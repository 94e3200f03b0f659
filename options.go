package anonymous

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// defaultMaxDataSize is Options.MaxDataSize's default.
const defaultMaxDataSize = 4 << 10

// defaultCookieName is the guest cookie's name when Options.CookieName is
// empty and the cookie is Secure, host-only and at Path "/".
const defaultCookieName = "__Host-anonymous_guest"

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
	// Its context ends before LinkLease runs out.
	//
	// Exactly once holds while the store keeps what it acknowledged, lost
	// replies included. It cannot hold past two things, so make the
	// callback safe to repeat, keyed by the guest's id (remember
	// ev.AnonymousUser.User.ID with what it moved, and move nothing for an
	// id seen before; ExampleOptions_onLinkAccount does): should the store
	// fail after the callback succeeded, the login request waits about 2 s,
	// the link's last write is retried in the background until LinkLease
	// runs out (Manager.Close waits for it), and if the store is down all
	// that time, a replayed copy of the guest's cookie can link it again;
	// and a store that loses its data (a Redis restart without persistence)
	// forgets the link, so a replayed cookie of a linked guest brings the
	// guest, and this callback, back.
	// With a TxStore (sqlstore) the callback runs inside the link's
	// transaction instead, whose context carries it (sqlstore.TxFrom): its
	// writes there commit with the guest's end or not at all.
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
	// Default: 4 KiB, enough for a cart of a few dozen lines.
	MaxDataSize int
	// DisableDeleteAnonymousUser turns off the delete-anonymous-user endpoint
	// and, on a link, keeps the guest's user record (marked as linked, its
	// session revoked) instead of deleting it. Default: false.
	DisableDeleteAnonymousUser bool

	// Identify tells the middleware who the real user of a request is, or
	// nil when nobody is logged in; typically from the application's own
	// auth cookie. It runs on every request that is not skipped, so keep it
	// cheap. A request with a guest cookie and a real user links the guest.
	// A real user without a guest is never issued one. A real user with an
	// empty ID is an error wrapping ErrInvalidUser, handled as Identify
	// failing: nothing is linked. Default: nil (every
	// visitor is a guest; link with Manager.Link).
	Identify func(r *http.Request) (*User, error)

	// CookieName is the guest cookie's name. Default:
	// "__Host-anonymous_guest", which no other host of the domain can set
	// or shadow. A cookie that is not Secure, host-only and at Path "/"
	// cannot have that name: with CookieInsecure, CookieDomain or a
	// CookiePath, New requires a CookieName ("anonymous_guest" keeps the
	// cookies such settings gave before). A "__Host-" or "__Secure-" name
	// must meet its prefix's rules.
	CookieName string
	// CookieDomain is the cookie's Domain attribute; setting it requires a
	// CookieName. Default: empty (host-only).
	CookieDomain string
	// CookiePath is the cookie's Path attribute; one other than "/"
	// requires a CookieName. Default: "/".
	CookiePath string
	// CookieInsecure drops the Secure attribute. Default: false (Secure),
	// which browsers honour on https and on http://localhost. Set it only
	// for plain-HTTP development on other hosts, with a CookieName.
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
	// PersistOnIssue writes a new guest to the store on its first request.
	// By default nothing is written then: the first-visit cookie carries
	// the whole new guest, signed, and the guest is stored when the browser
	// sends the cookie back, proving it keeps cookies, so crawlers and
	// one-hit visitors cost no store write.
	PersistOnIssue bool
	// Budget bounds how many guests one client may have stored. Over it, a
	// new visitor's guest lives in its first-visit cookie, with its data,
	// until the budget allows storing it, and sign-in/anonymous answers
	// 429. A login that links a guest never stored is charged to the
	// account instead, at the finest level's rates. Default: on, per IPv4
	// address and IPv6 /64, /56 and /48 (see Budget and DefaultLevels).
	Budget Budget
	// FirstVisitWindow is how long a first visit's cookie, which carries a
	// guest not stored yet (without PersistOnIssue), can store it: a visitor
	// who returns later gets a new guest. Storing the guest gives it a new
	// token: the requests of a page that carry the first-visit cookie from the
	// same client within 10 s of the store share the guest and its new cookie,
	// and a copy of the cookie planted in another browser gets a guest of its
	// own (see docs/first-visit.md). Default: 1 hour (capped at Lifetime).
	FirstVisitWindow time.Duration
	// FailClosed answers 503 Service Unavailable, cookie untouched, when
	// the store fails. By default the middleware fails open: it serves the
	// request without a guest and keeps the visitor's cookie untouched, so
	// the guest comes back with the store.
	FailClosed bool
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
	// MeterProvider receives the package's metrics (see
	// docs/observability.md). Default: otel.GetMeterProvider(), a no-op
	// until the application sets one.
	MeterProvider metric.MeterProvider
	// TracerProvider receives spans of links, and of store calls made for a
	// request whose span is recording. Default: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// TrustedOrigins are origins (scheme://host[:port]) allowed to make
	// cross-site POSTs to the endpoints, each spelled out: New refuses a
	// wildcard such as "https://*.example.com". Default: none (same origin
	// only).
	TrustedOrigins []string
}

// parseOptions fills in opts' defaults and checks every field but the keys,
// which newCookieCodec checks.
func parseOptions(o Options) (Options, error) {
	for _, step := range []func(*Options) error{durations, cookieOptions, endpoints} {
		if err := step(&o); err != nil {
			return o, err
		}
	}
	o.MaxDataSize = cmp.Or(o.MaxDataSize, defaultMaxDataSize)
	for _, l := range o.Budget.Levels {
		if err := l.check(); err != nil {
			return o, err
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

// durations checks the durations and sizes of o and fills in their
// defaults.
func durations(o *Options) error {
	if o.Lifetime < 0 || o.RefreshAfter < 0 || o.LinkLease < 0 || o.FirstVisitWindow < 0 || o.MaxDataSize < 0 {
		return errors.New("negative Lifetime, RefreshAfter, LinkLease, FirstVisitWindow or MaxDataSize")
	}
	o.Lifetime = cmp.Or(o.Lifetime, 30*24*time.Hour)
	if o.Lifetime < time.Second {
		return fmt.Errorf("a Lifetime of %v is under a second", o.Lifetime)
	}
	o.RefreshAfter = min(cmp.Or(o.RefreshAfter, 24*time.Hour), o.Lifetime)
	o.LinkLease = cmp.Or(o.LinkLease, time.Minute)
	o.FirstVisitWindow = min(cmp.Or(o.FirstVisitWindow, time.Hour), o.Lifetime)
	return nil
}

// cookieOptions checks o's cookie options and fills in their defaults.
func cookieOptions(o *Options) error {
	o.CookiePath = cmp.Or(o.CookiePath, "/")
	if err := cookieNameChosen(o); err != nil {
		return err
	}
	o.CookieName = cmp.Or(o.CookieName, defaultCookieName)
	o.CookieSameSite = cmp.Or(o.CookieSameSite, http.SameSiteLaxMode)
	return validCookie(o)
}

// endpoints checks BasePath and EmailDomainName and fills in BasePath's
// default.
func endpoints(o *Options) error {
	o.BasePath = cmp.Or(o.BasePath, "/api/auth")
	if !strings.HasPrefix(o.BasePath, "/") {
		return fmt.Errorf("BasePath %q must start with /", o.BasePath)
	}
	o.BasePath = strings.TrimRight(o.BasePath, "/")
	if o.EmailDomainName != "" {
		if _, err := mail.ParseAddress("temp@" + o.EmailDomainName); err != nil {
			return fmt.Errorf("EmailDomainName %q: %w", o.EmailDomainName, err)
		}
	}
	return nil
}

// cookieNameChosen refuses a setting that cannot keep the default name, a
// __Host- cookie's, without a name of its own: the default used to fall
// back to "anonymous_guest" then, so turning the setting on in production
// silently dropped every guest cookie issued under the other name.
func cookieNameChosen(o *Options) error {
	if o.CookieName != "" {
		return nil
	}
	var set []string
	if o.CookieInsecure {
		set = append(set, "CookieInsecure")
	}
	if o.CookieDomain != "" {
		set = append(set, "CookieDomain")
	}
	if o.CookiePath != "/" {
		set = append(set, "CookiePath")
	}
	if len(set) == 0 {
		return nil
	}
	return fmt.Errorf("%s cannot keep the cookie name %q (a __Host- cookie is Secure, host-only and at Path /): "+
		"set CookieName too, to %q to keep cookies issued with this setting before, or to a name of your own",
		strings.Join(set, " and "), defaultCookieName, "anonymous_guest")
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
