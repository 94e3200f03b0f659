package app

// The pages: what they show and how they are rendered.

import (
	"bytes"
	"context"
	"errors"
	"net/http"

	"github.com/guestpass/anonymous"
)

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
