// Package app is the demo shop: every visitor gets a guest with a friendly
// name and a cart, and signing in to a demo account moves the guest's cart
// into the account's, merging quantities. The command in the parent folder
// serves it; the browser tests build it in process.
package app

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// seedCarts are the account carts the shop starts with, so that a first
// login already shows quantities merging.
var seedCarts = map[string]map[string]int{"alice": {"mug": 1}}

// Config configures a Shop. The zero value works (random keys).
type Config struct {
	// HashKey signs the guest cookie (32 or 64 bytes) and derives the key of
	// the shop's login cookie. Default: nil, meaning random keys, so cookies
	// do not survive a restart (the package logs a warning).
	HashKey []byte
	// InsecureCookies drops the Secure attribute from both cookies, for
	// plain-HTTP hosts other than localhost. Default: false (Secure).
	InsecureCookies bool
	// Logger receives the shop's and the package's logs. Default:
	// slog.Default().
	Logger *slog.Logger
}

// Shop is the demo shop's web application: an http.Handler. Carts live in
// process memory. It is safe for concurrent use.
type Shop struct {
	guests  *anonymous.Manager
	login   *securecookie.SecureCookie
	flash   *securecookie.SecureCookie
	log     *slog.Logger
	secure  bool
	handler http.Handler

	mu    sync.Mutex
	carts map[string]map[string]int // owner (guest or account id) → product id → quantity
	// notices holds one message per account, shown on its next page.
	notices map[string]string
}

// New returns the shop, keeping its guests in store.
func New(store anonymous.Store, cfg Config) (*Shop, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Shop{
		log:     log,
		secure:  !cfg.InsecureCookies,
		carts:   make(map[string]map[string]int),
		notices: make(map[string]string),
	}
	for owner, c := range seedCarts {
		s.carts[owner] = copyCart(c)
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

	var err error
	s.guests, err = anonymous.New(store, anonymous.Options{
		Keys:           keys,
		GenerateName:   guestName,
		Identify:       s.identify,
		OnLinkAccount:  s.moveCart,
		CookieInsecure: cfg.InsecureCookies,
		BasePath:       BasePath,
		ErrorLog:       log,
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
	// Cross-site form posts are refused before a guest is even looked at.
	s.handler = http.NewCrossOriginProtection().Handler(s.guests.Middleware(mux))
	return s, nil
}

// ServeHTTP serves the shop.
func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	s.handler.ServeHTTP(w, r)
}

// Cart returns a copy of owner's cart (a guest id or an account id):
// product id → quantity. An owner without a cart gets an empty map.
func (s *Shop) Cart(owner string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyCart(s.carts[owner])
}

func copyCart(c map[string]int) map[string]int {
	out := make(map[string]int, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
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

// moveCart is Options.OnLinkAccount: the guest's cart joins the account's.
// It deletes the guest's cart as it adds it, so a rare repeat (see
// Options.OnLinkAccount) finds nothing to add.
func (s *Shop) moveCart(_ context.Context, l anonymous.LinkEvent) error {
	guest, owner := l.AnonymousUser.User, l.NewUser.User
	s.mu.Lock()
	defer s.mu.Unlock()
	moved := 0
	if g := s.carts[guest.ID]; len(g) > 0 {
		dst := s.cartOf(owner.ID)
		for id, n := range g {
			dst[id] = min(dst[id]+n, maxQty)
			moved += n
		}
	}
	delete(s.carts, guest.ID)
	if moved > 0 {
		s.notices[owner.ID] = fmt.Sprintf("We moved %d %s from your guest cart (as %s) into your account.",
			moved, plural(moved, "item", "items"), guest.Name)
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

// cartOf returns owner's cart, making an empty one if it has none. The
// caller holds s.mu.
func (s *Shop) cartOf(owner string) map[string]int {
	c := s.carts[owner]
	if c == nil {
		c = make(map[string]int)
		s.carts[owner] = c
	}
	return c
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
	s.mu.Lock()
	c := s.cartOf(u.ID)
	full := c[p.ID] >= maxQty
	if !full {
		c[p.ID]++
	}
	s.mu.Unlock()
	if full {
		s.setFlash(w, flashAtMost, p.ID)
	} else {
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
	s.mu.Lock()
	c := s.carts[u.ID]
	switch {
	case n > 0 && c == nil:
		s.carts[u.ID] = map[string]int{p.ID: n}
	case n > 0:
		c[p.ID] = n
	case c != nil:
		delete(c, p.ID)
		if len(c) == 0 {
			delete(s.carts, u.ID)
		}
	}
	s.mu.Unlock()
	if n == 0 {
		s.setFlash(w, flashRemoved, p.ID)
	} else {
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
	Notices  []notice
	Alert    bool // a notice is a warning: the notices are an alert
	Error    string
	Username string
	Accounts []demoLogin
}

type cartLine struct {
	Product product
	Qty     int
}

// Subtotal is the line's price in cents.
func (l cartLine) Subtotal() int { return l.Qty * l.Product.Price }

type demoLogin struct{ Username, Password, Name string }

// fillCart puts u's cart into d, in catalog order so that it stays put.
func (s *Shop) fillCart(d *pageData, u *anonymous.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.carts[u.ID]
	for _, p := range catalog {
		if n := c[p.ID]; n > 0 {
			d.Lines = append(d.Lines, cartLine{Product: p, Qty: n})
			d.Count += n
			d.Total += n * p.Price
		}
	}
}

func (s *Shop) home(w http.ResponseWriter, r *http.Request) {
	d := &pageData{Products: catalog}
	u := anonymous.UserFrom(r.Context())
	if u != nil {
		s.fillCart(d, u)
	}
	if f, ok := s.takeFlash(w, r); ok {
		if n, ok := f.notice(u, d.Lines); ok {
			d.Notices = append(d.Notices, n)
		}
	}
	if u != nil && !u.IsAnonymous {
		s.mu.Lock()
		if text := s.notices[u.ID]; text != "" {
			d.Notices = append(d.Notices, notice{Text: text})
		}
		delete(s.notices, u.ID)
		s.mu.Unlock()
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
var pageTitles = map[string]string{"home": "Shop", "login": "Sign in", "forget": "Forget me?"}

// render fills the common fields and writes the page, or a clean 500 when
// the template fails (never half a page).
func (s *Shop) render(w http.ResponseWriter, r *http.Request, status int, name string, d *pageData) {
	if d.User == nil {
		d.User = anonymous.UserFrom(r.Context())
	}
	d.Page = name
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
