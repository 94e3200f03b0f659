package app

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// The shop's cookies are Secure unless Config.InsecureCookies drops the
// attribute, and browsers drop a Secure cookie that comes over plain HTTP
// from any host but localhost and the loopback addresses. The guest cookie
// is then never kept: every page is a new guest, and the cart silently
// does nothing. So each page checks its request, and when the cookie is
// being dropped a banner at the top of the page says so, and what to do.

// cookieWarning is what the banner says.
type cookieWarning struct {
	Host     string // the host the browser drops the cookie from
	LocalURL string // the shop's address on localhost, where it keeps it
}

// secureCookieDropped reports whether a browser drops a Secure cookie set
// in answer to r: the cookie is Secure, r came over plain HTTP (no TLS,
// and no X-Forwarded-Proto: https from a proxy in front), and r's host is
// not one where browsers keep Secure cookies over plain HTTP: localhost, a
// name under .localhost, or a loopback address.
func secureCookieDropped(secure bool, r *http.Request) bool {
	if !secure || r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.IsLoopback()
}

// newCookieWarning words the banner for r, whose cookie is dropped.
func newCookieWarning(r *http.Request) *cookieWarning {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = strings.Trim(r.Host, "[]"), ""
	}
	local := "http://localhost/"
	if n, err := strconv.ParseUint(port, 10, 16); err == nil && n != 0 && n != 80 {
		local = "http://localhost:" + strconv.FormatUint(n, 10) + "/"
	}
	return &cookieWarning{Host: host, LocalURL: local}
}
