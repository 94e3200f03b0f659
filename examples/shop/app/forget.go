package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/guestpass/anonymous"
)

// Forget me takes two steps, both plain HTML: GET /forget says what it
// deletes and asks, and its form's POST /forget deletes the guest, its
// cart and its cookie, then the home page says so and introduces the new
// guest. The confirmation names the guest it was shown for, so a tab left
// open from before a login, or from before that guest was forgotten
// elsewhere, deletes nothing and says why.

// forgetPage asks a guest to confirm Forget me. A signed-in visitor, who
// followed the link from a page older than their login, is told that
// there is no guest to forget.
func (s *Shop) forgetPage(w http.ResponseWriter, r *http.Request) {
	d := &pageData{}
	if u := anonymous.UserFrom(r.Context()); u != nil {
		s.fillCart(d, u)
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
		switch code, err := s.deleteGuest(w, r); {
		case err == nil:
			s.mu.Lock()
			delete(s.carts, u.ID)
			s.mu.Unlock()
			s.log.Info("shop: guest forgotten", "guest", u.ID)
			s.setFlash(w, flashForgotten, u.Name)
		case code == "USER_IS_NOT_ANONYMOUS":
			s.setFlash(w, flashForgetSignedIn, "")
		case code == "UNAUTHORIZED":
			s.setFlash(w, flashForgetGone, "")
		default:
			s.log.ErrorContext(r.Context(), "shop: forgetting the guest failed", "guest", u.ID, "err", err)
			s.setFlash(w, flashForgetFailed, "")
		}
	}
	seeOther(w, r, "/")
}

// deleteGuest deletes the request's guest through the package's own
// endpoint, POST BasePath/delete-anonymous-user, called in process: the
// package alone decides what deleting a guest takes (its record and an
// expired cookie), and the shop's form needs no script to call it. The
// endpoint's Set-Cookie is passed on to w. On failure it returns the
// endpoint's error code.
func (s *Shop) deleteGuest(w http.ResponseWriter, r *http.Request) (code string, err error) {
	req := r.Clone(r.Context())
	req.Method = http.MethodPost
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = BasePath+"/delete-anonymous-user", "", ""
	req.Body, req.ContentLength = http.NoBody, 0
	req.Header.Del("Content-Type")
	req.Form, req.PostForm = nil, nil
	rec := &recorder{header: http.Header{}}
	s.guests.Handler().ServeHTTP(rec, req)
	for _, c := range rec.header.Values("Set-Cookie") {
		w.Header().Add("Set-Cookie", c)
	}
	if rec.status == http.StatusOK {
		return "", nil
	}
	var e struct{ Code, Message string }
	_ = json.Unmarshal(rec.body.Bytes(), &e)
	return e.Code, fmt.Errorf("%s: %d %s (%s)", req.URL.Path, rec.status, e.Code, e.Message)
}

// recorder keeps what a handler answers.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
