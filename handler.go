package anonymous

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Handler returns the JSON endpoints, served under Options.BasePath
// (default "/api/auth") and wire-compatible with the npm better-auth client
// and its anonymousClient() plugin:
//
//	POST {BasePath}/sign-in/anonymous      200 {"token", "user"}, guest cookie set
//	POST {BasePath}/delete-anonymous-user  200 {"success": true}, guest cookie expired
//	GET  {BasePath}/get-session            200 {"session", "user"}, or null without a guest
//
// They see the real user Options.Identify names, as every other request
// does: a request that carries a guest cookie and a real user links the
// guest first (see Link), so a client that only talks to the endpoints
// links too. Then get-session answers null (a real user's session is the
// application's), delete-anonymous-user 403 USER_IS_NOT_ANONYMOUS (400
// DELETE_ANONYMOUS_USER_DISABLED when deleting is disabled), and
// sign-in/anonymous 400 SIGNED_IN_USERS_CANNOT_SIGN_IN_ANONYMOUSLY.
//
// Errors are JSON {"code", "message"} with Better Auth's codes and statuses.
// Store failures are 500s with the endpoint's failure code
// (FAILED_TO_CREATE_USER, FAILED_TO_DELETE_ANONYMOUS_USER,
// FAILED_TO_GET_SESSION), logged to Options.ErrorLog; the visitor's cookie is
// left as it is, so no guest is lost.
//
// A guest is recognised by its cookie or, for clients without cookies, by
// "Authorization: Bearer <token>", the token being Session.Token as returned
// by sign-in/anonymous and get-session (a stored guest's: one held in its
// first-visit cookie needs the cookie). A cookie takes precedence over a
// bearer token.
//
// Unlike Better Auth, which would hand out a guest to a signed-in user (and
// link it away on the next request), sign-in/anonymous refuses a request
// whose Options.Identify names a real user: 400
// SIGNED_IN_USERS_CANNOT_SIGN_IN_ANONYMOUSLY.
//
// Middleware serves these endpoints itself; Handler is for applications that
// mount them apart from it. It matches full request paths, so mount it
// without http.StripPrefix: mux.Handle(BasePath+"/", m.Handler()). Other
// paths under BasePath answer 404, a wrong method 405 with an Allow header. Cross-site
// browser POSTs are refused with 403 INVALID_ORIGIN by
// http.CrossOriginProtection, except from Options.TrustedOrigins; CORS
// headers, if a trusted origin needs them, are the application's. Request
// bodies are read and ignored, up to a small bound (413 beyond it).
//
// It is built once by New and is safe for concurrent use.
func (m *Manager) Handler() http.Handler { return m.api }

// maxBody bounds the request bodies the endpoints read and ignore; the
// better-auth client sends "{}".
const maxBody = 8 << 10

// apiError is an error answer of the endpoints. Codes and messages are
// Better Auth's, except where noted.
type apiError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

var (
	errInvalidEmailFormat = &apiError{http.StatusBadRequest, "INVALID_EMAIL_FORMAT", "Email was not generated in a valid format"}
	errFailedToCreateUser = &apiError{http.StatusInternalServerError, "FAILED_TO_CREATE_USER", "Failed to create user"}
	errSignInAgain        = &apiError{http.StatusBadRequest, "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY", "Anonymous users cannot sign in again anonymously"}
	errFailedToDelete     = &apiError{http.StatusInternalServerError, "FAILED_TO_DELETE_ANONYMOUS_USER", "Failed to delete anonymous user"}
	errNotAnonymous       = &apiError{http.StatusForbidden, "USER_IS_NOT_ANONYMOUS", "User is not anonymous"}
	errDeleteDisabled     = &apiError{http.StatusBadRequest, "DELETE_ANONYMOUS_USER_DISABLED", "Deleting anonymous users is disabled"}
	errUnauthorized       = &apiError{http.StatusUnauthorized, "UNAUTHORIZED", "Unauthorized"}
	errFailedToGetSession = &apiError{http.StatusInternalServerError, "FAILED_TO_GET_SESSION", "Failed to get session"}
	errInvalidOrigin      = &apiError{http.StatusForbidden, "INVALID_ORIGIN", "Invalid origin"}
	errTooManyRequests    = &apiError{http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "Too many requests. Please try again later."}                     // Better Auth's message; it sends no code
	errSignedInUser       = &apiError{http.StatusBadRequest, "SIGNED_IN_USERS_CANNOT_SIGN_IN_ANONYMOUSLY", "Signed-in users cannot sign in anonymously"} // this package's own
	errBeingLinked        = &apiError{http.StatusConflict, "GUEST_IS_BEING_LINKED", "The guest is being linked to an account."}                          // this package's own
	errStoreFull          = &apiError{http.StatusServiceUnavailable, "STORE_FULL", "No new guest can be stored now. Please try again later."}            // this package's own
	errNotFound           = &apiError{http.StatusNotFound, "NOT_FOUND", "Not found"}                                                                     // this package's own
	errMethodNotAllowed   = &apiError{http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "Method not allowed"}                                           // this package's own
	errBodyTooLarge       = &apiError{http.StatusRequestEntityTooLarge, "REQUEST_BODY_TOO_LARGE", "Request body is too large"}                           // this package's own
	errUnreadableBody     = &apiError{http.StatusBadRequest, "INVALID_REQUEST_BODY", "Request body could not be read"}                                   // this package's own
)

// api serves the endpoints; routes are keyed by full path.
type api struct {
	cop    *http.CrossOriginProtection
	base   string // Options.BasePath unescaped, as r.URL.Path holds it
	routes map[string]route
}

type route struct {
	method string // GET also answers HEAD
	serve  http.HandlerFunc
}

func newAPI(m *Manager) (*api, error) {
	cop := http.NewCrossOriginProtection()
	for i, o := range m.opts.TrustedOrigins {
		if strings.Contains(o, "*") {
			// CrossOriginProtection would take it literally, and it would
			// never match.
			return nil, fmt.Errorf("TrustedOrigins[%d] %q: wildcards are not supported; list each origin (scheme://host[:port])", i, o)
		}
		if err := cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("TrustedOrigins: %w", err)
		}
	}
	b := m.opts.BasePath
	base, err := url.PathUnescape(b)
	if err != nil {
		base = "" // no route can match; every path goes to the map
	}
	return &api{cop: cop, base: base, routes: map[string]route{
		b + "/sign-in/anonymous":     {http.MethodPost, m.signInAnonymous},
		b + "/delete-anonymous-user": {http.MethodPost, m.deleteAnonymousUser},
		b + "/get-session":           {http.MethodGet, m.getSession},
	}}, nil
}

// serves reports whether r's path is one of the endpoints'. The path is
// taken as sent, escaped, as http.ServeMux routes it: an encoded slash is not
// a slash.
func (a *api) serves(r *http.Request) bool {
	// A path that escapes to a route starts with the base path unescaped:
	// the cheap test first.
	if !strings.HasPrefix(r.URL.Path, a.base) {
		return false
	}
	_, ok := a.routes[r.URL.EscapedPath()]
	return ok
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every answer depends on the request's credentials.
	h := w.Header()
	h["Vary"] = append(h["Vary"], "Cookie", "Authorization")
	rt, ok := a.routes[r.URL.EscapedPath()]
	if !ok {
		writeError(w, errNotFound)
		return
	}
	if r.Method != rt.method && (rt.method != http.MethodGet || r.Method != http.MethodHead) {
		allow := rt.method
		if allow == http.MethodGet {
			allow = "GET, HEAD"
		}
		w.Header().Set("Allow", allow)
		writeError(w, errMethodNotAllowed)
		return
	}
	if a.cop.Check(r) != nil {
		writeError(w, errInvalidOrigin)
		return
	}
	if r.Body != nil {
		// Reading the ignored body keeps the connection reusable; the bound
		// keeps a client from making us read much.
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				writeError(w, errBodyTooLarge)
			} else {
				writeError(w, errUnreadableBody)
			}
			return
		}
	}
	rt.serve(w, r)
}

// signInAnonymous creates and stores a guest at once and sets its cookie.
func (m *Manager) signInAnonymous(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	real, err := m.identify(w, r)
	if err != nil {
		m.log.ErrorContext(ctx, "anonymous: Identify failed; no guest created", "err", err)
		writeError(w, errFailedToCreateUser)
		return
	}
	if real != nil {
		writeError(w, errSignedInUser)
		return
	}
	old, err := m.load(w, r, nil)
	if err != nil {
		// Issuing now could replace a valid guest the store cannot see.
		m.log.ErrorContext(ctx, "anonymous: store failed loading the guest; no guest created", "err", err)
		writeError(w, errFailedToCreateUser)
		return
	}
	if old != nil {
		writeError(w, errSignInAgain)
		return
	}
	g, wait, err := m.issue(w, r, sourceSignIn, true, nil)
	switch {
	case errors.Is(err, ErrOverBudget):
		writeTooManyRequests(w, wait)
		return
	case errors.Is(err, ErrStoreFull):
		// A bearer client needs a stored guest; memstore's sweeper frees
		// room as guests expire.
		w.Header().Set("Retry-After", "30")
		writeError(w, errStoreFull)
		return
	case errors.Is(err, ErrInvalidEmail):
		m.log.ErrorContext(ctx, "anonymous: no guest created", "err", err)
		writeError(w, errInvalidEmailFormat)
		return
	case err != nil:
		m.log.ErrorContext(ctx, "anonymous: creating a guest failed", "err", err)
		writeError(w, errFailedToCreateUser)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Token string `json:"token"`
		User  *User  `json:"user"`
	}{g.rec.Session.Token, &g.rec.User})
}

// deleteAnonymousUser deletes the request's guest and its session, and
// expires its cookie. Its checks come in Better Auth's order: a session (a
// guest or a real user), then DisableDeleteAnonymousUser, then anonymity.
func (m *Manager) deleteAnonymousUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	real, err := m.identify(w, r)
	if err != nil {
		m.log.ErrorContext(ctx, "anonymous: Identify failed; no guest deleted", "err", err)
		writeError(w, errFailedToDelete)
		return
	}
	var g *guest
	if real == nil {
		if g, err = m.lookup(r, nil); err != nil { // no cookie renewal: it is expired below
			m.log.ErrorContext(ctx, "anonymous: store failed loading the guest to delete", "err", err)
			writeError(w, errFailedToDelete)
			return
		}
		if g == nil || g == held {
			m.expireDeadCookie(w, r, g)
			writeError(w, errUnauthorized)
			return
		}
	}
	if m.opts.DisableDeleteAnonymousUser {
		writeError(w, errDeleteDisabled)
		return
	}
	if real != nil {
		writeError(w, errNotAnonymous)
		return
	}
	// The visitor asked for it: finish even if the client goes away.
	switch err := m.delete(context.WithoutCancel(ctx), g.rec, DeletedByVisitor); {
	case errors.Is(err, ErrNotFound): // linked or deleted by a concurrent request
		m.expireCookie(w)
		writeError(w, errUnauthorized)
		return
	case errors.Is(err, ErrClaimed): // a login in another tab is linking it
		writeError(w, errBeingLinked)
		return
	case err != nil:
		m.log.ErrorContext(ctx, "anonymous: deleting guest failed", "guest", g.rec.User.ID, "err", err)
		writeError(w, errFailedToDelete)
		return
	}
	m.expireCookie(w)
	writeJSON(w, http.StatusOK, struct {
		Success bool `json:"success"`
	}{true})
}

// getSession answers the request's guest and session, or null: without a
// guest, and for a real user, whose session is the application's.
func (m *Manager) getSession(w http.ResponseWriter, r *http.Request) {
	real, err := m.identify(w, r)
	switch {
	case err != nil:
		m.log.ErrorContext(r.Context(), "anonymous: Identify failed", "err", err)
		writeError(w, errFailedToGetSession)
		return
	case real != nil:
		writeJSON(w, http.StatusOK, nil)
		return
	}
	g, err := m.load(w, r, nil)
	if err != nil {
		m.log.ErrorContext(r.Context(), "anonymous: store failed loading the guest", "err", err)
		writeError(w, errFailedToGetSession)
		return
	}
	if g == nil || g == held {
		m.expireDeadCookie(w, r, g)
		writeJSON(w, http.StatusOK, nil)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Session *Session `json:"session"`
		User    *User    `json:"user"`
	}{&g.rec.Session, &g.rec.User})
}

// expireDeadCookie expires the guest cookie of a request that lookup found
// no guest for, as Better Auth does, so that a client without a browser does
// not carry a dead cookie for the rest of its life. A held guest's cookie
// is alive.
func (m *Manager) expireDeadCookie(w http.ResponseWriter, r *http.Request, g *guest) {
	if g != nil {
		return
	}
	for range cookieValues(r, m.opts.CookieName) {
		m.expireCookie(w)
		return
	}
}

// identify returns the real user Options.Identify names for an endpoint's
// request and, as the middleware does on every other request, links the
// request's guest to it first, so that a client that only talks to the
// endpoints links too. The link's own failure is logged and retried on the
// guest's next request; the endpoint answers for the real user either way.
func (m *Manager) identify(w http.ResponseWriter, r *http.Request) (*User, error) {
	real, err := m.realUser(r)
	if real != nil {
		m.linkOnRequest(w, r, real, nil)
	}
	return real, err
}

func writeError(w http.ResponseWriter, e *apiError) { writeJSON(w, e.status, e) }

// writeTooManyRequests answers as Better Auth's rate limiter does: 429, its
// message, and the wait in seconds in X-Retry-After (and the standard
// Retry-After).
func writeTooManyRequests(w http.ResponseWriter, wait time.Duration) {
	secs := strconv.Itoa(max(int((wait+time.Second-1)/time.Second), 1))
	w.Header().Set("Retry-After", secs)
	w.Header().Set("X-Retry-After", secs)
	writeError(w, errTooManyRequests)
}

// writeJSON answers v as JSON. Every answer depends on the caller's
// credentials, so none may be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only this file's own types get here, and they always marshal.
		status, b = http.StatusInternalServerError, []byte(`{"code":"INTERNAL_SERVER_ERROR","message":"Internal server error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}
