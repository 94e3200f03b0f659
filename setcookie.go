package anonymous

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Writing the guest cookie into a response: the middleware renders the
// Set-Cookie line itself, and keeps caches from storing it.

// setCookie sets the guest cookie: the short form (token and expiry) for a
// stored guest, the long form (the whole guest) for a pending one. now is
// the time of the request; st, when not nil, holds the header's values.
func (m *Manager) setCookie(w http.ResponseWriter, st *reqState, token string, now, exp time.Time, pending *Record) {
	sp := scratch.Get().(*[]byte)
	defer scratch.Put(sp)
	line := append(append((*sp)[:0], m.opts.CookieName...), '=')
	line, err := m.cc.appendEncoded(line, token, now, exp, pending)
	*sp = line
	if err != nil {
		// newGuest bounds every field, so this is a bug, not bad input.
		m.log.Error("anonymous: encoding the guest cookie failed", "err", err)
		return
	}
	m.writeCookie(w, st, line, max(int(exp.Sub(now).Round(time.Second)/time.Second), 1))
}

// replaceCookie sets the guest cookie, as setCookie does, in place of any
// guest cookie the response already sets.
func (m *Manager) replaceCookie(w http.ResponseWriter, token string, now, exp time.Time, pending *Record) {
	m.dropCookieLines(w.Header())
	m.setCookie(w, nil, token, now, exp, pending)
}

// dropCookieLines removes the Set-Cookie lines of the guest cookie from h.
func (m *Manager) dropCookieLines(h http.Header) {
	prefix := m.opts.CookieName + "="
	h["Set-Cookie"] = slices.DeleteFunc(h["Set-Cookie"], func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// expireCookie tells the browser to drop the guest cookie, in the
// response's only line for it: one set earlier in the request (a guest
// stored to be linked) would otherwise be what a client that reads the
// first line keeps.
func (m *Manager) expireCookie(w http.ResponseWriter) {
	m.dropCookieLines(w.Header())
	m.writeCookie(w, nil, append([]byte(m.opts.CookieName), '='), 0)
}

// writeCookie finishes and writes a Set-Cookie line that starts with
// "name=value". The middleware writes it itself: the value is base64url and
// the attributes were checked by New, so http.SetCookie's sanitising of
// every byte would be work done twice.
func (m *Manager) writeCookie(w http.ResponseWriter, st *reqState, line []byte, maxAge int) {
	line = append(line, "; Max-Age="...)
	line = strconv.AppendInt(line, int64(maxAge), 10)
	line = append(line, m.cookieAttrs...)
	h := w.Header()
	if old := h["Set-Cookie"]; len(old) > 0 {
		h["Set-Cookie"] = append(old, string(line))
	} else {
		h["Set-Cookie"] = st.headerValue(slotSetCookie, string(line))
	}
	noCacheSetCookie(h, st)
}

// noCacheSetCookie keeps caches from storing the Set-Cookie header, without
// weakening a Cache-Control already set: no-store, private or a bare
// no-cache are stronger and are left alone; other directives keep theirs.
func noCacheSetCookie(h http.Header, st *reqState) {
	cc := h.Get("Cache-Control")
	if cc == "" {
		h["Cache-Control"] = st.headerValue(slotCacheControl, `no-cache="Set-Cookie"`)
		return
	}
	for d := range strings.SplitSeq(cc, ",") {
		switch strings.ToLower(strings.TrimSpace(d)) {
		case "no-store", "private", "no-cache", `no-cache="set-cookie"`:
			return
		}
	}
	h.Set("Cache-Control", cc+`, no-cache="Set-Cookie"`)
}

// cookieAttributes renders the guest cookie's fixed attributes once.
func cookieAttributes(o *Options) string {
	a := "; Path=" + o.CookiePath
	if o.CookieDomain != "" {
		a += "; Domain=" + strings.TrimPrefix(o.CookieDomain, ".")
	}
	a += "; HttpOnly"
	if !o.CookieInsecure {
		a += "; Secure"
	}
	switch o.CookieSameSite {
	case http.SameSiteStrictMode:
		a += "; SameSite=Strict"
	case http.SameSiteNoneMode:
		a += "; SameSite=None"
	default:
		a += "; SameSite=Lax"
	}
	return a
}
