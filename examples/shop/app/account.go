package app

// The demo accounts' login and logout, and who a request's user is.

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/guestpass/anonymous"
)

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
