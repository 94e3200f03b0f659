package anonymous

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Middleware loads the request's guest, issues one to a new visitor, links
// the guest when Options.Identify names a real user, and puts the user in the
// request's context (see UserFrom and SessionFrom) before calling next. It
// sets the cookie before next runs and wraps no ResponseWriter.
//
// A cookie that fails to decode, has expired, or (a stored guest's) names a
// guest the store does not have counts as no cookie: the visitor gets a fresh guest. When the
// store fails, the visitor's cookie is left untouched (see
// Options.FailClosed).
//
// The middleware serves the JSON endpoints (see Handler) itself at their
// paths under Options.BasePath, so mounting Handler as well is optional.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.api.serves(r) {
			m.api.ServeHTTP(w, r)
			return
		}
		if m.opts.Skip != nil && m.opts.Skip(r) {
			next.ServeHTTP(w, r)
			return
		}
		s := m.newState(r)
		s.setVary(w.Header())
		real, err := m.realUser(r)
		if err != nil {
			// The application's own auth failed: neither link nor issue.
			m.log.ErrorContext(r.Context(), "anonymous: Identify failed", "err", err)
			next.ServeHTTP(w, r)
			return
		}
		if real != nil {
			s.user = real
			s.linkErr = m.linkOnRequest(w, r, real, s)
			next.ServeHTTP(w, s.request(r))
			return
		}
		g, err := m.load(w, r, s)
		if err == nil && g == nil {
			source := "" // stored when the visitor returns
			if m.opts.PersistOnIssue {
				source = sourceIssue // and if the budget says no, then
			}
			g, _, err = m.issue(w, r, source, false, s)
		}
		if err != nil {
			m.storeFailed(w, r, next, err)
			return
		}
		if g == held {
			next.ServeHTTP(w, r)
			return
		}
		s.user, s.guest = &g.rec.User, g
		next.ServeHTTP(w, s.request(r))
	})
}

// storeFailed applies Options.FailClosed; the visitor's cookie is never
// touched, so its guest comes back with the store.
func (m *Manager) storeFailed(w http.ResponseWriter, r *http.Request, next http.Handler, err error) {
	m.log.ErrorContext(r.Context(), "anonymous: store failed; serving the request without a guest", "err", err)
	if m.opts.FailClosed {
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	next.ServeHTTP(w, r)
}

// warnPlainHTTP logs, once per Manager, that a Secure guest cookie was set
// on a plain-HTTP request to a host other than a loopback one: browsers
// drop such a cookie, so each of that visitor's requests is a new guest and
// its cart is lost.
func (m *Manager) warnPlainHTTP(r *http.Request) {
	if m.opts.CookieInsecure || r.TLS != nil || m.plainHTTPWarned.Load() ||
		strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") || loopbackHost(r.Host) {
		return
	}
	if m.plainHTTPWarned.CompareAndSwap(false, true) {
		m.log.WarnContext(r.Context(), "anonymous: a Secure guest cookie was set over plain HTTP to a host that is not loopback; "+
			"browsers drop it, so every request is a new guest: serve https, or set CookieInsecure (with a CookieName) in development (logged once)",
			"host", r.Host)
	}
}

// loopbackHost reports whether host (with or without a port) is one that
// browsers treat as secure over plain HTTP: localhost, a name under
// .localhost, or a loopback address.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}
