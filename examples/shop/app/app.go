// Package app is the demo shop: every visitor gets a guest with a friendly
// name and a cart, and signing in to a demo account moves the guest's cart
// into the account's, merging quantities. A guest's cart lives in the
// guest's data, so it is stored, expires and is deleted with the guest; an
// account's lives in Carts (in memory, or in Redis). The command in the
// parent folder serves it; the browser tests build it in process.
package app

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
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
	s := &Shop{log: log, store: store, carts: carts, secure: !cfg.InsecureCookies, meters: newMeters()}
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
	var err error
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

// ServeHTTP serves the shop.
func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	s.handler.ServeHTTP(w, r)
}

// Cart returns owner's cart, product id → quantity: an account's from
// Carts, a guest's from its data in the guest store (empty once the guest
// is deleted, linked or gone).
func (s *Shop) Cart(ctx context.Context, owner string) (map[string]int, error) {
	if _, ok := demoAccounts[owner]; ok {
		c, err := s.carts.Get(ctx, owner)
		return orEmpty(c.Items), err
	}
	rec, err := s.guests.Record(ctx, owner)
	switch {
	case errors.Is(err, anonymous.ErrNotFound):
		return map[string]int{}, nil
	case err != nil:
		return nil, err
	}
	var d guestData
	if len(rec.Data) > 0 {
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return nil, fmt.Errorf("shop: the data of guest %s is not a cart: %w", owner, err)
		}
	}
	return orEmpty(d.Cart), nil
}

func orEmpty(c map[string]int) map[string]int {
	if c == nil {
		return map[string]int{}
	}
	return c
}

// identify is Options.Identify: the account named by the shop's login
// cookie, or nil. A missing, forged or stale cookie simply means "nobody".
func (s *Shop) identify(r *http.Request) (*anonymous.User, error) {
	c, err := r.Cookie(loginCookie)
	if err != nil {
		return nil, nil
	}
	var name string
	if err := s.login.Decode(loginCookie, c.Value, &name); err != nil {
		return nil, nil
	}
	a, ok := demoAccounts[name]
	if !ok {
		return nil, nil
	}
	u := a.user
	return &u, nil
}

// moveCart is Options.OnLinkAccount: the guest's cart, handed over as the
// guest's data, joins the account's, with a notice for the account's next
// page, in one atomic update of the account's cart. The update records the
// guest's id, so should the package run the callback again for the same
// guest (see Options.OnLinkAccount), it adds nothing twice. An error keeps
// the guest, and its cart, for the package to retry.
func (s *Shop) moveCart(ctx context.Context, ev anonymous.LinkEvent) error {
	guest, owner := ev.AnonymousUser.User, ev.NewUser.User
	var d guestData
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			// Only the shop writes guests' data: a value that is no cart is a
			// bug, and retrying the link would not mend it.
			s.log.ErrorContext(ctx, "shop: the guest's data is not a cart; nothing moved", "guest", guest.ID, "account", owner.ID, "err", err)
			return nil
		}
	}
	moved, again := 0, false
	if len(d.Cart) > 0 {
		_, err := s.carts.Update(ctx, owner.ID, func(c *AccountCart) error {
			moved, again = 0, slices.Contains(c.Merged, guest.ID)
			if again {
				return ErrNoChange
			}
			if c.Items == nil {
				c.Items = make(map[string]int)
			}
			for id, n := range d.Cart {
				c.Items[id] = min(c.Items[id]+n, maxQty)
				moved += n
			}
			c.Merged = append(c.Merged, guest.ID)
			if len(c.Merged) > maxMerged {
				c.Merged = slices.Clone(c.Merged[len(c.Merged)-maxMerged:])
			}
			c.Notice = fmt.Sprintf("We moved %d %s from your guest cart (as %s) into your account.",
				moved, plural(moved, "item", "items"), guest.Name)
			return nil
		})
		if err != nil {
			return fmt.Errorf("shop: moving the cart of guest %s into %s: %w", guest.ID, owner.ID, err)
		}
	}
	if again {
		s.log.Info("shop: guest linked again; its cart was merged already", "guest", guest.ID, "account", owner.ID)
		return nil
	}
	s.log.Info("shop: guest linked to account", "guest", guest.ID, "account", owner.ID, "items", moved)
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// maxQty bounds a cart line.
const maxQty = 99

// owner returns the request's user, or answers 503 and returns nil when
// there is none (the guest store is down: the package serves on without a
// guest rather than replace the visitor's cookie).
func (s *Shop) owner(w http.ResponseWriter, r *http.Request) *anonymous.User {
	u := anonymous.UserFrom(r.Context())
	if u == nil {
		http.Error(w, "The shop cannot see your cart right now. Please try again in a moment.", http.StatusServiceUnavailable)
	}
	return u
}

// form parses a small urlencoded body; anything else is the client's error.
func form(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Bad form.", http.StatusBadRequest)
		return false
	}
	return true
}

// changeCart applies change to the request's cart, the guest's data or
// the account's cart, atomically: change may run more than once, and
// returns false to leave the cart as it was (nothing is written then).
func (s *Shop) changeCart(w http.ResponseWriter, r *http.Request, u *anonymous.User, change func(c map[string]int) bool) error {
	if u.IsAnonymous {
		// A first-visit guest is stored now, with its cart, and its cookie
		// re-set: this runs before the response is written.
		_, err := anonymous.UpdateJSON(s.guests, w, r, func(d *guestData) error {
			if d.Cart == nil {
				d.Cart = make(map[string]int)
			}
			if !change(d.Cart) {
				return ErrNoChange
			}
			return nil
		})
		if errors.Is(err, ErrNoChange) {
			return nil
		}
		return err
	}
	_, err := s.carts.Update(r.Context(), u.ID, func(c *AccountCart) error {
		if c.Items == nil {
			c.Items = make(map[string]int)
		}
		if !change(c.Items) {
			return ErrNoChange
		}
		return nil
	})
	return err
}

// cartFailed leaves a notice of why the cart did not change, and logs what
// the visitor cannot mend.
func (s *Shop) cartFailed(w http.ResponseWriter, r *http.Request, u *anonymous.User, err error) {
	s.log.ErrorContext(r.Context(), "shop: changing the cart failed", "user", u.ID, "err", err)
	s.setFlash(w, flashCartFailed, "")
}

func seeOther(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (s *Shop) cartAdd(w http.ResponseWriter, r *http.Request) {
	if !form(w, r) {
		return
	}
	p, ok := productByID(r.PostForm.Get("product"))
	if !ok {
		http.Error(w, "No such product.", http.StatusBadRequest)
		return
	}
	u := s.owner(w, r)
	if u == nil {
		return
	}
	full := false
	err := s.changeCart(w, r, u, func(c map[string]int) bool {
		full = c[p.ID] >= maxQty
		if !full {
			c[p.ID]++
		}
		return !full
	})
	switch {
	case err != nil:
		s.cartFailed(w, r, u, err)
	case full:
		s.setFlash(w, flashAtMost, p.ID)
	default:
		s.setFlash(w, flashAdded, p.ID)
	}
	seeOther(w, r, "/")
}

// cartSet sets a line's quantity; 0 removes it.
func (s *Shop) cartSet(w http.ResponseWriter, r *http.Request) {
	if !form(w, r) {
		return
	}
	p, ok := productByID(r.PostForm.Get("product"))
	if !ok {
		http.Error(w, "No such product.", http.StatusBadRequest)
		return
	}
	n, err := strconv.Atoi(r.PostForm.Get("qty"))
	if err != nil || n < 0 || n > maxQty {
		http.Error(w, fmt.Sprintf("Quantity must be a whole number from 0 to %d.", maxQty), http.StatusBadRequest)
		return
	}
	u := s.owner(w, r)
	if u == nil {
		return
	}
	err = s.changeCart(w, r, u, func(c map[string]int) bool {
		if n == 0 {
			_, had := c[p.ID]
			delete(c, p.ID)
			return had
		}
		had := c[p.ID]
		c[p.ID] = n
		return had != n
	})
	switch {
	case err != nil:
		s.cartFailed(w, r, u, err)
	case n == 0:
		s.setFlash(w, flashRemoved, p.ID)
	default:
		s.setFlash(w, flashSet, p.ID)
	}
	seeOther(w, r, "/")
}

func (s *Shop) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if !form(w, r) {
		return
	}
	name := strings.ToLower(strings.TrimSpace(r.PostForm.Get("username")))
	a, known := demoAccounts[name]
	// Compare hashes so the comparison takes the same time whatever matches.
	got, want := sha256.Sum256([]byte(r.PostForm.Get("password"))), sha256.Sum256([]byte(a.password))
	if !known || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		if known { // never log what a stranger typed, nor any password
			s.log.Info("shop: failed login", "username", name)
		}
		s.render(w, r, http.StatusUnauthorized, "login", &pageData{Error: "Wrong username or password.", Username: name})
		return
	}
	v, err := s.login.Encode(loginCookie, name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: loginCookie, Value: v, Path: "/", MaxAge: int(loginLifetime / time.Second),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
	// The guest is linked by the middleware on the next request, when
	// Identify first sees this cookie: no login method needs to call Link.
	seeOther(w, r, "/")
}

// logout ends the login; the next page says so and introduces the new
// guest the visitor becomes. A Log out button left on a page from before
// the login ended hears that there was nothing to end.
func (s *Shop) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: loginCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
	switch u := anonymous.UserFrom(r.Context()); {
	case u != nil && !u.IsAnonymous:
		s.setFlash(w, flashSignedOut, u.Name)
	case u != nil:
		s.setFlash(w, flashNotSignedIn, "")
	}
	seeOther(w, r, "/")
}

// pageData is what the templates see.
type pageData struct {
	Page     string // the template's name
	Title    string // what the page is, before the shop's name in <title>
	User     *anonymous.User
	Products []product
	Lines    []cartLine
	Count    int
	Total    int
	CartDown bool // the cart could not be read
	Notices  []notice
	Alert    bool // a notice is a warning: the notices are an alert
	Error    string
	Username string
	Accounts []demoLogin
	Stats    *stats
	// CookieWarning, when set, is the banner saying that the browser
	// drops the shop's Secure cookie (see secureCookieDropped).
	CookieWarning *cookieWarning
}

type cartLine struct {
	Product product
	Qty     int
}

// Subtotal is the line's price in cents.
func (l cartLine) Subtotal() int { return l.Qty * l.Product.Price }

type demoLogin struct{ Username, Password, Name string }

// fillCart puts u's cart into d, in catalog order so that it stays put,
// and returns the notice an account's cart holds for its next page. A
// guest's cart is in the guest's data, which the middleware read with the
// guest; a cart that cannot be read sets d.CartDown.
func (s *Shop) fillCart(r *http.Request, d *pageData, u *anonymous.User) (kept string) {
	var items map[string]int
	if u.IsAnonymous {
		g, err := anonymous.JSONFrom[guestData](r.Context())
		if err != nil {
			s.log.ErrorContext(r.Context(), "shop: reading the guest's cart failed", "guest", u.ID, "err", err)
			d.CartDown = true
			return ""
		}
		items = g.Cart
	} else {
		c, err := s.carts.Get(r.Context(), u.ID)
		if err != nil {
			s.log.ErrorContext(r.Context(), "shop: reading the account's cart failed", "account", u.ID, "err", err)
			d.CartDown = true
			return ""
		}
		items, kept = c.Items, c.Notice
	}
	for _, p := range catalog {
		if n := items[p.ID]; n > 0 {
			d.Lines = append(d.Lines, cartLine{Product: p, Qty: n})
			d.Count += n
			d.Total += n * p.Price
		}
	}
	return kept
}

func (s *Shop) home(w http.ResponseWriter, r *http.Request) {
	d := &pageData{Products: catalog}
	u := anonymous.UserFrom(r.Context())
	var kept string // a notice the account's cart kept for this page
	if u != nil {
		kept = s.fillCart(r, d, u)
	}
	if f, ok := s.takeFlash(w, r); ok {
		if n, ok := f.notice(u, d.Lines); ok {
			d.Notices = append(d.Notices, n)
		}
	}
	if kept != "" {
		d.Notices = append(d.Notices, notice{Text: kept})
		// Shown once: clear it unless a newer one took its place.
		_, err := s.carts.Update(r.Context(), u.ID, func(c *AccountCart) error {
			if c.Notice != kept {
				return ErrNoChange
			}
			c.Notice = ""
			return nil
		})
		if err != nil {
			s.log.WarnContext(r.Context(), "shop: clearing the account's notice failed", "account", u.ID, "err", err)
		}
	}
	for _, n := range d.Notices {
		d.Alert = d.Alert || n.Warn
	}
	s.render(w, r, http.StatusOK, "home", d)
}

// loginPage shows the login form, or, to a visitor who is signed in (Back
// after signing in lands here), who they are and the way back to the shop.
// Like every page it is not stored (Cache-Control: no-store), so Back asks
// the server again.
func (s *Shop) loginPage(w http.ResponseWriter, r *http.Request) {
	d := &pageData{}
	if u := anonymous.UserFrom(r.Context()); u != nil && !u.IsAnonymous {
		d.Title = "Signed in"
	}
	s.render(w, r, http.StatusOK, "login", d)
}

// pageTitles name the pages in their <title>, each its own, so that tabs,
// history and screen readers tell them apart.
var pageTitles = map[string]string{"home": "Shop", "login": "Sign in", "forget": "Forget me?", "stats": "Statistics"}

// render fills the common fields and writes the page, or a clean 500 when
// the template fails (never half a page).
func (s *Shop) render(w http.ResponseWriter, r *http.Request, status int, name string, d *pageData) {
	if d.User == nil {
		d.User = anonymous.UserFrom(r.Context())
	}
	d.Page = name
	if secureCookieDropped(s.secure, r) {
		d.CookieWarning = newCookieWarning(r)
	}
	if d.Title == "" {
		d.Title = pageTitles[name]
	}
	if name == "login" {
		for _, n := range []string{"alice", "bob"} {
			a := demoAccounts[n]
			d.Accounts = append(d.Accounts, demoLogin{Username: n, Password: a.password, Name: a.user.Name})
		}
	}
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, d); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b.WriteTo(w)
}

func (s *Shop) fail(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, context.Canceled) {
		s.log.ErrorContext(r.Context(), "shop: request failed", "path", r.URL.Path, "err", err)
	}
	http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
}
