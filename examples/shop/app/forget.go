package app

import (
	"errors"
	"net/http"

	"github.com/guestpass/anonymous"
)

// Forget me takes two steps, both plain HTML: GET /forget says what it
// deletes and asks, and its form's POST /forget deletes the guest, with
// its cart (the guest's data, which nothing else keeps), and its cookie,
// then the home page says so and introduces the new guest. The
// confirmation names the guest it was shown for, so a tab left open from
// before a login, or from before that guest was forgotten elsewhere,
// deletes nothing and says why.

// forgetPage asks a guest to confirm Forget me. A signed-in visitor, who
// followed the link from a page older than their login, is told that
// there is no guest to forget.
func (s *Shop) forgetPage(w http.ResponseWriter, r *http.Request) {
	d := &pageData{}
	if u := anonymous.UserFrom(r.Context()); u != nil {
		s.fillCart(r, d, u)
		if !u.IsAnonymous {
			d.Title = "Nothing to forget"
		}
	}
	s.render(w, r, http.StatusOK, "forget", d)
}

// forget deletes the guest the confirmation was shown for, if it is still
// the visitor, and sends the visitor home to a notice of what happened.
func (s *Shop) forget(w http.ResponseWriter, r *http.Request) {
	if !form(w, r) {
		return
	}
	u := anonymous.UserFrom(r.Context())
	switch {
	case u == nil:
		s.setFlash(w, flashForgetFailed, "")
	case !u.IsAnonymous:
		s.setFlash(w, flashForgetSignedIn, "")
	case r.PostForm.Get("guest") != u.ID:
		s.setFlash(w, flashForgetGone, "")
	default:
		// The guest's cookie now names a deleted guest: the next page
		// issues a new one.
		switch err := s.guests.DeleteGuest(r.Context(), u.ID); {
		case err == nil:
			// The cart was the guest's data: it went with the guest.
			s.log.Info("shop: guest forgotten", "guest", u.ID)
			s.setFlash(w, flashForgotten, u.Name)
		case errors.Is(err, anonymous.ErrNotFound):
			s.setFlash(w, flashForgetGone, "")
		default:
			s.log.ErrorContext(r.Context(), "shop: forgetting the guest failed", "guest", u.ID, "err", err)
			s.setFlash(w, flashForgetFailed, "")
		}
	}
	seeOther(w, r, "/")
}
