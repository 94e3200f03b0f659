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
//			Keys: [][]byte{[]byte("a-32-byte-long-hmac-key-for-demo"), nil},
//		})
//		if err != nil {
//			log.Fatal(err)
//		}
//
//		mux := http.NewServeMux()
//		mux.Handle("/api/auth/", guests.Handler())
//		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
//			if u := anonymous.UserFrom(r.Context()); u != nil {
//				fmt.Fprintf(w, "Hello, %s (%s)\n", u.Name, u.ID)
//			}
//		})
//		log.Fatal(http.ListenAndServe(":8080", guests.Middleware(mux)))
//	}
//
// The middleware needs no response buffering and wraps no ResponseWriter, so
// http.Flusher, http.Hijacker, server-sent events and WebSockets keep working.
package anonymous

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// Errors returned by the package and by Store implementations. Compare with
// errors.Is: they are usually wrapped.
var (
	// ErrNotFound: the store has no such guest (never created, expired or
	// deleted), or, for Touch and Claim, the guest was revoked by a link.
	ErrNotFound = errors.New("anonymous: guest not found")
	// ErrExists: Store.Create found a guest with the same id.
	ErrExists = errors.New("anonymous: guest already exists")
	// ErrClaimed: another link holds the guest's claim.
	ErrClaimed = errors.New("anonymous: guest is being linked")
	// ErrInvalidEmail: GenerateRandomEmail returned something that is not a
	// bare email address. No guest is created with it.
	ErrInvalidEmail = errors.New("anonymous: email was not generated in a valid format")
	// ErrInvalidOptions wraps every error New returns for bad Options.
	ErrInvalidOptions = errors.New("anonymous: invalid options")
)

// User is a user as the application and the wire see it. Guests are the only
// users this package creates and stores; real users belong to the
// application, which hands them over through Options.Identify or
// Manager.Link.
//
// Its JSON form matches Better Auth's: timestamps are RFC 3339 in UTC with
// milliseconds.
type User struct {
	ID            string    `json:"id"`
	Email         string    `json:"email"`
	EmailVerified bool      `json:"emailVerified"`
	Name          string    `json:"name"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
	// IsAnonymous is true for guests and false for real users.
	IsAnonymous bool `json:"isAnonymous"`
}

// Session is a guest's session. Token is the guest's credential: the cookie
// carries it, signed, and a client without cookies may send it as
// "Authorization: Bearer <token>". Stores never hold it in plaintext.
type Session struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	UserID    string    `json:"userId"`
	ExpiresAt time.Time `json:"expiresAt"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	IPAddress string    `json:"ipAddress"`
	UserAgent string    `json:"userAgent"`
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

// Record is what a Store keeps for one guest.
type Record struct {
	User User
	// Session.Token is always empty in a store: TokenHash stands for it.
	Session Session
	// TokenHash is the SHA-256 of Session.Token. All zero once revoked.
	TokenHash [sha256.Size]byte
	// LinkedTo is the id of the real user the guest was linked to, set by
	// Store.Revoke when the guest is kept after a link
	// (Options.DisableDeleteAnonymousUser). Such a guest has no session and
	// is never linked again.
	LinkedTo string
}

// Store keeps guests. Every method takes a context and honours its
// cancellation and deadline; every method is safe for concurrent use. A
// guest's record vanishes by itself at Session.ExpiresAt (as moved by
// Touch): no Store needs a cron job. The package storetest checks an
// implementation against this contract.
type Store interface {
	// Create stores a copy of rec, expiring at rec.Session.ExpiresAt and
	// without Session.Token, unless a guest with the same User.ID exists (or
	// its id is reserved, see Delete), in which case it returns ErrExists and
	// changes nothing. Of concurrent Creates of one id exactly one succeeds.
	Create(ctx context.Context, rec *Record) error

	// Get returns the guest with this id in one round trip, or ErrNotFound
	// when there is none or it has expired. The result is the caller's own
	// copy.
	Get(ctx context.Context, id string) (*Record, error)

	// Touch moves the guest's expiry to expiresAt (in the record's
	// Session.ExpiresAt and in the store's own expiry) and sets
	// Session.UpdatedAt to now. It returns ErrNotFound when there is no such
	// guest or it was revoked.
	Touch(ctx context.Context, id string, expiresAt, now time.Time) error

	// Claim takes the guest's link lease for owner until the given time. It
	// returns ErrNotFound when there is no such guest or it was revoked, and
	// ErrClaimed while another owner's lease has not run out; the lease's
	// own owner may claim again, which moves it. Of concurrent Claims exactly
	// one succeeds; a lease that runs out (a crashed process) can be claimed
	// by anyone.
	Claim(ctx context.Context, id, owner string, until time.Time) error

	// Release drops owner's lease on the guest. A lease held by someone else,
	// no lease, or no guest at all is left as it is, and is not an error.
	Release(ctx context.Context, id, owner string) error

	// Delete removes the guest, its session and any lease. The id stays
	// reserved until the guest's expiry: Get returns ErrNotFound and Create
	// ErrExists, so a replayed cookie of a guest not stored yet cannot bring
	// it back. Deleting a guest that does not exist is not an error.
	Delete(ctx context.Context, id string) error

	// Revoke keeps the guest's user record but ends its session for good:
	// it zeroes TokenHash, sets LinkedTo, and drops any lease; the record
	// still expires at its Session.ExpiresAt. It returns ErrNotFound when
	// there is no such guest or it was revoked already.
	Revoke(ctx context.Context, id, linkedTo string) error
}

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

// StoreFailure chooses what the middleware does when the store fails.
type StoreFailure int

const (
	// FailOpen, the default, serves the request without a guest and keeps
	// the visitor's cookie untouched, so the guest comes back with the store.
	FailOpen StoreFailure = iota
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

// Link is what OnLinkAccount receives: the guest and the real user it becomes.
type Link struct {
	AnonymousUser Account
	NewUser       Account
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
	// Its context ends after LinkLease. Exactly once holds while the store
	// answers; should the store fail after the callback succeeded, the guest
	// is held for its remaining life, and if even that fails the link may run
	// again after LinkLease: make the callback safe to repeat for a pair.
	// Default: nil (the guest is deleted with nothing moved).
	OnLinkAccount func(ctx context.Context, link Link) error
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

	// CookieName is the guest cookie's name. Default: "anonymous_guest".
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

	// Keys are the cookie key pairs, newest first: a hash key (HMAC-SHA256,
	// 32 or 64 bytes) then a block key (nil for signed-only cookies, or 16,
	// 24 or 32 bytes for AES encryption), repeated for older pairs. New
	// cookies use the first pair; any pair decodes, which is how keys rotate.
	// Default: one random pair, with a warning that cookies will not survive
	// a restart. Recommended: a random 32-byte hash key from a secret store.
	Keys [][]byte

	// Lifetime is how long a guest lives without a visit; each visit slides
	// it (see RefreshAfter). Default: 30 days.
	Lifetime time.Duration
	// RefreshAfter is how old a guest's expiry may get before a visit moves
	// it: the only store write on a returning guest's path. Default: 1 day
	// (capped at Lifetime).
	RefreshAfter time.Duration
	// Persist chooses when a new guest is written. Default: PersistOnReturn.
	Persist Persist
	// OnStoreError chooses what happens when the store fails. Default:
	// FailOpen.
	OnStoreError StoreFailure
	// LinkLease bounds how long a link may hold its claim on a guest; a
	// claim left by a crashed process is taken over after it, and
	// OnLinkAccount's context is cancelled then. Keep it well above what the
	// callback takes. Default: 1 minute.
	LinkLease time.Duration

	// Skip, when it returns true, makes the middleware pass the request
	// through untouched: no cookie read or written, no store access (static
	// files, health checks). Default: nil.
	Skip func(r *http.Request) bool
	// ErrorLog receives store failures and callback errors. Default:
	// slog.Default().
	ErrorLog *slog.Logger
	// BasePath is where Handler serves the JSON endpoints; the middleware
	// never issues guests below it. Default: "/api/auth".
	BasePath string
	// TrustedOrigins are origins (scheme://host[:port]) allowed to make
	// cross-site POSTs to the endpoints. Default: none (same origin only).
	TrustedOrigins []string
	// Now is the clock. Default: time.Now. For tests.
	Now func() time.Time
}

// Manager issues, loads and links guests. Create it with New. It is safe for
// concurrent use.
type Manager struct {
	store       Store
	opts        Options
	cc          *cookieCodec
	cookieAttrs string // "; Path=/; HttpOnly; Secure; SameSite=Lax" and the like
	log         *slog.Logger
	api         http.Handler // the JSON endpoints, built once by New
}

// New checks opts, fills in defaults and returns a Manager on store. It
// reports every configuration error now rather than on the first request.
func New(store Store, opts Options) (*Manager, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalidOptions)
	}
	o := opts
	if o.Lifetime < 0 || o.RefreshAfter < 0 || o.LinkLease < 0 {
		return nil, fmt.Errorf("%w: negative Lifetime, RefreshAfter or LinkLease", ErrInvalidOptions)
	}
	if o.Lifetime == 0 {
		o.Lifetime = 30 * 24 * time.Hour
	}
	if o.Lifetime < time.Second {
		return nil, fmt.Errorf("%w: Lifetime %v is under a second", ErrInvalidOptions, o.Lifetime)
	}
	if o.RefreshAfter == 0 {
		o.RefreshAfter = 24 * time.Hour
	}
	o.RefreshAfter = min(o.RefreshAfter, o.Lifetime)
	if o.LinkLease == 0 {
		o.LinkLease = time.Minute
	}
	if o.Persist != PersistOnReturn && o.Persist != PersistOnIssue {
		return nil, fmt.Errorf("%w: unknown Persist %d", ErrInvalidOptions, o.Persist)
	}
	if o.OnStoreError != FailOpen && o.OnStoreError != FailClosed {
		return nil, fmt.Errorf("%w: unknown OnStoreError %d", ErrInvalidOptions, o.OnStoreError)
	}
	if o.CookieName == "" {
		o.CookieName = "anonymous_guest"
	}
	if o.CookiePath == "" {
		o.CookiePath = "/"
	}
	if err := validCookie(&o); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	if o.CookieSameSite == 0 {
		o.CookieSameSite = http.SameSiteLaxMode
	}
	if o.CookieSameSite == http.SameSiteNoneMode && o.CookieInsecure {
		return nil, fmt.Errorf("%w: SameSite=None cookies must be Secure", ErrInvalidOptions)
	}
	if o.BasePath == "" {
		o.BasePath = "/api/auth"
	}
	if !strings.HasPrefix(o.BasePath, "/") {
		return nil, fmt.Errorf("%w: BasePath %q must start with /", ErrInvalidOptions, o.BasePath)
	}
	o.BasePath = strings.TrimRight(o.BasePath, "/")
	if o.ErrorLog == nil {
		o.ErrorLog = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.EmailDomainName != "" {
		if _, err := mail.ParseAddress("temp@" + o.EmailDomainName); err != nil {
			return nil, fmt.Errorf("%w: EmailDomainName %q: %v", ErrInvalidOptions, o.EmailDomainName, err)
		}
	}
	if len(o.Keys) == 0 {
		o.Keys = [][]byte{randomBytes(32), nil}
		o.ErrorLog.Warn("anonymous: no Keys set; using random keys, so guest cookies will not survive a restart")
	}
	cc, err := newCookieCodec(o.CookieName, o.Keys)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	m := &Manager{store: store, opts: o, cc: cc, cookieAttrs: cookieAttributes(&o), log: o.ErrorLog}
	if m.api, err = m.newAPI(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	return m, nil
}

// validCookie checks the cookie's name, domain and path, which the
// middleware writes as they are.
func validCookie(o *Options) error {
	c := http.Cookie{Name: o.CookieName, Value: "v", Domain: o.CookieDomain}
	if err := c.Valid(); err != nil {
		return fmt.Errorf("cookie: %v", err)
	}
	for _, r := range o.CookiePath {
		if r < 0x20 || r == 0x7f || r == ';' {
			return fmt.Errorf("CookiePath %q holds a control character or ';'", o.CookiePath)
		}
	}
	return nil
}

// newGuest generates a guest: identity per the spec, a fresh session with a
// random token. It does not store it.
func (m *Manager) newGuest(r *http.Request) (*Record, string, error) {
	ctx := r.Context()
	now := m.opts.Now().UTC().Truncate(time.Millisecond)
	// One read of crypto/rand for the two ids' entropy and the token's secret.
	var ent [2*10 + 32]byte
	rand.Read(ent[:])
	id, sid := newID(now, ent[:10]), newID(now, ent[10:20])
	email, err := m.generateEmail(ctx, id)
	if err != nil {
		return nil, "", err
	}
	name := "Anonymous"
	if m.opts.GenerateName != nil {
		if n := m.opts.GenerateName(ctx); n != "" {
			name = n
		}
	}
	if len(name) > maxField || len(email) > maxField {
		return nil, "", fmt.Errorf("anonymous: generated name or email is over %d bytes", maxField)
	}
	token := id + "." + base64.RawURLEncoding.EncodeToString(ent[20:])
	rec := &Record{
		User: User{ID: id, Email: email, Name: name, CreatedAt: now, UpdatedAt: now, IsAnonymous: true},
		Session: Session{
			ID: sid, UserID: id, ExpiresAt: now.Add(m.opts.Lifetime), CreatedAt: now, UpdatedAt: now,
			IPAddress: clientIP(r), UserAgent: userAgent(r),
		},
		TokenHash: sha256.Sum256([]byte(token)),
	}
	return rec, token, nil
}

func (m *Manager) generateEmail(ctx context.Context, id string) (string, error) {
	lower := strings.ToLower(id)
	switch {
	case m.opts.GenerateRandomEmail != nil:
		email, err := m.opts.GenerateRandomEmail(ctx)
		if err != nil {
			return "", fmt.Errorf("anonymous: GenerateRandomEmail: %w", err)
		}
		if a, err := mail.ParseAddress(email); err != nil || a.Address != email || a.Name != "" {
			return "", fmt.Errorf("%w: %q", ErrInvalidEmail, email)
		}
		return strings.ToLower(email), nil
	case m.opts.EmailDomainName != "":
		return "temp-" + lower + "@" + strings.ToLower(m.opts.EmailDomainName), nil
	default:
		return "temp@" + lower + ".com", nil
	}
}

// newID returns a ULID with the given 10 bytes of entropy, which come from
// crypto/rand: ids are unique under concurrency and cannot be predicted
// (unlike ulid.Make's).
func newID(now time.Time, entropy []byte) string {
	var u ulid.ULID
	_ = u.SetTime(ulid.Timestamp(now)) // fails only after the year 10889
	_ = u.SetEntropy(entropy)          // fails only for a length other than 10
	return u.String()
}

// A session token is the guest id, a dot, and 32 random bytes in unpadded
// base64url. The id prefix lets a bearer token find its guest in one store
// round trip; the random part is the secret.

// tokenID returns the guest id a token names, or "" for a malformed token.
func tokenID(token string) string {
	id, secret, ok := strings.Cut(token, ".")
	if !ok || len(id) != ulid.EncodedSize || len(secret) != base64.RawURLEncoding.EncodedLen(32) {
		return ""
	}
	if _, err := ulid.ParseStrict(id); err != nil {
		return ""
	}
	return id
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return b
}

// maxUserAgent bounds the User-Agent kept with a session: a client chooses
// it, and every stored byte costs the store memory for the guest's life.
const maxUserAgent = 512

func userAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) > maxUserAgent {
		ua = strings.ToValidUTF8(ua[:maxUserAgent], "")
	}
	return ua
}

// clientIP is the request's peer address without its port. Proxies' headers
// are not trusted: they are the application's to interpret.
func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}
