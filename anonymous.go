// Package anonymous gives every visitor of a net/http application a real,
// signed, server-side guest: an anonymous user with a generated email and
// name and a session, kept in a Store (memstore, redisstore, or sqlstore in
// the application's own SQL database). When the visitor later logs in with a
// real account, by any method, the package runs the application's
// OnLinkAccount callback exactly once (move the cart, the draft, the
// preferences) and deletes the guest.
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
//		store, err := memstore.New(memstore.Options{})
//		if err != nil {
//			log.Fatal(err)
//		}
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
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// User is a user as the application and the wire see it. Guests are the only
// users this package creates and stores; real users belong to the
// application, which hands them over through Options.Identify or
// Manager.Link.
//
// Its JSON form matches Better Auth's: timestamps are RFC 3339 in UTC with
// milliseconds.
type User struct {
	ID            string    // a guest's is a ULID
	Email         string    // a guest's: see Options.GenerateRandomEmail
	EmailVerified bool      // false for a guest
	Name          string    // a guest's: see Options.GenerateName
	CreatedAt     time.Time // a guest's: when it was made
	UpdatedAt     time.Time // when the user last changed
	// IsAnonymous is true for guests and false for real users.
	IsAnonymous bool
}

// Session is a guest's session. Token is the guest's credential: the cookie
// carries it, signed, and a client without cookies may send it as
// "Authorization: Bearer <token>". Stores never hold it in plaintext.
type Session struct {
	ID        string    // a ULID
	Token     string    // the credential; empty in a record a store keeps
	UserID    string    // the guest's User.ID
	ExpiresAt time.Time // when the guest ends, unless a visit slides it (Options.Lifetime)
	CreatedAt time.Time // when the guest was made
	UpdatedAt time.Time // when its expiry last moved
	// IPAddress is the client's address as Budget.Client names it, "" when
	// it names none.
	IPAddress string
	UserAgent string // the first request's User-Agent, at most 512 bytes
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

// Account is a user with its session, as OnLinkAccount sees it.
type Account struct {
	User *User // the guest, or the real user
	// Session is the guest's session for the anonymous side. For the new
	// user it is nil: real sessions belong to the application.
	Session *Session
}

// LinkEvent is what OnLinkAccount receives: the guest and the real user it
// becomes, and the guest's data (see Manager.UpdateData) to merge into the
// account.
type LinkEvent struct {
	AnonymousUser Account // the guest, with its session
	NewUser       Account // the real user, without a session
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

// String returns the reason as logs and metrics name it: "visitor",
// "link" or "application".
func (r DeleteReason) String() string {
	switch r {
	case DeletedByVisitor:
		return "visitor"
	case DeletedByLink:
		return "link"
	case DeletedByApplication:
		return "application"
	}
	return "DeleteReason(" + strconv.Itoa(int(r)) + ")"
}

// Manager issues, loads and links guests. Create it with New. It is safe for
// concurrent use.
type Manager struct {
	store       Store
	opts        Options
	cc          *cookieCodec
	tokenKeys   []*sync.Pool // derive first-visit guests' stored tokens (firstvisit.go)
	storing     storing      // first-visit guests being stored (firstvisit.go)
	cookieAttrs string       // "; Path=/; HttpOnly; Secure; SameSite=Lax" and the like
	// emailPrefix and emailSuffix surround a generated email's id.
	emailPrefix, emailSuffix string
	log                      *slog.Logger
	api                      *api // the JSON endpoints, built once by New
	// fullLogged is when "the store is full" was last logged, Unix seconds;
	// refusedLogged when clients over budget were, and refusedCount how
	// many were refused since.
	fullLogged, refusedLogged, refusedCount atomic.Int64
	// plainHTTPWarned is set once warnPlainHTTP has logged.
	plainHTTPWarned atomic.Bool
	metrics         *metrics
	// background counts the links whose last write is retried after their
	// request (see finish); Close waits for them.
	background sync.WaitGroup
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
	m.emailPrefix, m.emailSuffix = emailAffixes(&o)
	m.tokenKeys = tokenKeys(o.Keys)
	if m.api, err = newAPI(m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return m, nil
}
