// Package app is the demo shop: every visitor gets a guest with a friendly
// name and a cart, and signing in to a demo account moves the guest's cart
// into the account's, merging quantities. A guest's cart lives in the
// guest's data, so it is stored, expires and is deleted with the guest; an
// account's lives in Carts (in memory, or in Redis). The command in the
// parent folder serves it; the browser tests build it in process.
package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/guestpass/anonymous"
)

// BasePath is where the shop mounts the package's JSON endpoints.
const BasePath = "/api/auth"

// loginCookie is the shop's own login cookie: a real application's session,
// unrelated to the guest cookie the package manages.
const loginCookie = "shop_login"

// loginLifetime bounds how long a demo login lasts.
const loginLifetime = 7 * 24 * time.Hour

// account is a demo account. Passwords are shown on the login page, on
// purpose: this is a demo.
type account struct {
	user     anonymous.User
	password string
}

// demoAccounts are the shop's users, by lower-case username.
var demoAccounts = map[string]account{
	"alice": {user: anonymous.User{ID: "alice", Name: "Alice", Email: "alice@example.com", EmailVerified: true}, password: "wonderland"},
	"bob":   {user: anonymous.User{ID: "bob", Name: "Bob", Email: "bob@example.com", EmailVerified: true}, password: "builder"},
}

// A guest's cart lives in the guest's data (anonymous.UpdateJSON), so it
// is stored with the guest, expires with it and is deleted with it: no
// guest leaves anything behind in the shop. An account's cart lives in
// Carts: in process memory, or in Redis beside the guests.

// guestData is what the shop keeps in a guest's data.
type guestData struct {
	// Cart is product id → quantity, each from 1 to maxQty.
	Cart map[string]int `json:"cart,omitempty"`
}

// maxMerged bounds AccountCart.Merged: the guests a repeated OnLinkAccount
// must recognise.
const maxMerged = 20

// seedCarts are the account carts the shop starts with, so that a first
// login already shows quantities merging. An account's cart is seeded only
// when it has none, so a restart on Redis keeps what the account holds.
var seedCarts = map[string]map[string]int{"alice": {"mug": 1}}

// seedTimeout bounds seeding the account carts when the shop starts.
const seedTimeout = 5 * time.Second

// Config configures a Shop. The zero value works (random keys).
type Config struct {
	// HashKey signs the guest cookie (32 or 64 bytes) and derives the key of
	// the shop's login cookie. Default: nil, meaning random keys, so cookies
	// do not survive a restart (the package logs a warning).
	HashKey []byte
	// InsecureCookies drops the Secure attribute from the cookies, for
	// plain-HTTP hosts other than localhost; the guest cookie is then
	// named anonymous_guest, as a __Host- cookie must be Secure. Default:
	// false (Secure), and a page served over plain HTTP to such a host
	// shows a banner saying that the browser drops the cookie.
	InsecureCookies bool
	// Logger receives the shop's and the package's logs. Default:
	// slog.Default().
	Logger *slog.Logger
	// Carts keeps the accounts' carts. Default: NewMemoryCarts(), which
	// loses them when the process ends. Guests' carts are in the guest
	// store whatever this is.
	Carts Carts
}

// Shop is the demo shop's web application: an http.Handler. It keeps
// nothing about its visitors in process memory but what Config.Carts does.
// It is safe for concurrent use.
type Shop struct {
	guests  *anonymous.Manager
	store   anonymous.Store
	carts   Carts
	login   *securecookie.SecureCookie
	flash   *securecookie.SecureCookie
	log     *slog.Logger
	secure  bool
	meters  *meters
	handler http.Handler
}

// New returns the shop, keeping its guests in store and its accounts'
// carts in cfg.Carts, where it seeds the demo accounts' carts they do not
// have yet.
func New(store anonymous.Store, cfg Config) (*Shop, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	carts := cfg.Carts
	if carts == nil {
		carts = NewMemoryCarts()
	}
	mt, err := newMeters()
	if err != nil {
		return nil, err
	}
	s := &Shop{log: log, store: store, carts: carts, secure: !cfg.InsecureCookies, meters: mt}
	ctx, cancel := context.WithTimeout(context.Background(), seedTimeout)
	defer cancel()
	for account, items := range seedCarts {
		if _, err := carts.Seed(ctx, account, AccountCart{Items: maps.Clone(items)}); err != nil {
			return nil, err
		}
	}

	var keys []anonymous.Key
	if cfg.HashKey != nil {
		keys = []anonymous.Key{{Hash: cfg.HashKey}}
	}
	// One configured secret, three cookies: derive a key for each of the
	// shop's own, so that none shares the guest cookie's.
	key := func(label string) []byte {
		if cfg.HashKey == nil {
			return securecookie.GenerateRandomKey(32)
		}
		mac := hmac.New(sha256.New, cfg.HashKey)
		mac.Write([]byte(label))
		return mac.Sum(nil)
	}
	s.login = securecookie.New(key("examples/shop login cookie"), nil).MaxAge(int(loginLifetime / time.Second))
	s.flash = securecookie.New(key("examples/shop flash cookie"), nil).
		MaxAge(int(flashLifetime / time.Second)).SetSerializer(securecookie.JSONEncoder{})

	// Without Secure the cookie cannot be a __Host- cookie: name it, as
	// the package asks; a Secure one keeps the default __Host- name.
	var cookieName string
	if cfg.InsecureCookies {
		cookieName = "anonymous_guest"
	}
	s.guests, err = anonymous.New(store, anonymous.Options{
		Keys:           keys,
		GenerateName:   guestName,
		Identify:       s.identify,
		OnLinkAccount:  s.moveCart,
		CookieName:     cookieName,
		CookieInsecure: cfg.InsecureCookies,
		BasePath:       BasePath,
		ErrorLog:       log,
		MeterProvider:  s.meters.provider,
		OnGuestDeleted: s.meters.guestDeleted,
	})
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("POST /cart/add", s.cartAdd)
	mux.HandleFunc("POST /cart/set", s.cartSet)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginSubmit)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /forget", s.forgetPage)
	mux.HandleFunc("POST /forget", s.forget)
	mux.HandleFunc("GET /stats", s.statsPage)
	// Cross-site form posts are refused before a guest is even looked at;
	// /metrics is for a scraper, which gets no guest.
	outer := http.NewServeMux()
	outer.Handle("/", http.NewCrossOriginProtection().Handler(s.guests.Middleware(mux)))
	outer.HandleFunc("GET /metrics", s.serveMetrics)
	s.handler = outer
	return s, nil
}

// Close waits for the guests' background work (see anonymous.Manager.Close)
// until ctx is done. Call it once the server has stopped.
func (s *Shop) Close(ctx context.Context) error { return s.guests.Close(ctx) }

// ServeHTTP serves the shop.
func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	s.handler.ServeHTTP(w, r)
}

// maxQty bounds a cart line.
const maxQty = 99

// pageTitles name the pages in their <title>, each its own, so that tabs,
// history and screen readers tell them apart.
var pageTitles = map[string]string{"home": "Shop", "login": "Sign in", "forget": "Forget me?", "stats": "Statistics"}
