package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// bannerID marks the banner saying that the browser drops the cookie.
const bannerID = `id="cookie-warning"`

// serve answers r, as the shop's server does, and returns the page.
func serve(t *testing.T, shop *Shop, r *http.Request) string {
	t.Helper()
	w := httptest.NewRecorder()
	shop.ServeHTTP(w, r)
	resp := w.Result()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d; body:\n%s", r.Method, r.URL, resp.StatusCode, b)
	}
	return string(b)
}

// droppedRequest is a request whose Secure cookie a browser drops: plain
// HTTP to a host that is not loopback.
func droppedRequest() *http.Request {
	return httptest.NewRequest(http.MethodGet, "http://shop.example:8080/", nil)
}

func TestCookieWarningOnPlainHTTPToAnotherHost(t *testing.T) {
	shop := newTestShop(t, Config{}).shop
	for _, path := range []string{"/", "/login", "/forget", "/stats"} {
		body := serve(t, shop, httptest.NewRequest(http.MethodGet, "http://shop.example:8080"+path, nil))
		if !strings.Contains(body, bannerID) {
			t.Fatalf("%s over plain HTTP to shop.example has no banner:\n%s", path, body)
		}
		// At the top of the page: before the header.
		if strings.Index(body, bannerID) > strings.Index(body, `<header class="top">`) {
			t.Errorf("%s: the banner is below the header", path)
		}
		for _, want := range []string{
			"Your cart will not work on this address.",
			"Secure cookie on plain HTTP to <code>shop.example</code>",
			"Use https",
			`<a href="http://localhost:8080/">http://localhost:8080/</a>`,
			"-insecure-cookies</code> (development only)",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the banner lacks %s", path, want)
			}
		}
	}
	// Without a port in Host, the way to localhost has none either.
	body := serve(t, shop, httptest.NewRequest(http.MethodGet, "http://shop.example/", nil))
	if !strings.Contains(body, `<a href="http://localhost/">`) {
		t.Errorf("the banner for shop.example on port 80 does not point to http://localhost/:\n%s", body)
	}
}

// TestNoCookieWarningWhenTheCookieIsKept checks each way the cookie is
// kept against the same shop's banner for droppedRequest, so that each
// case fails whether the check always or never holds.
func TestNoCookieWarningWhenTheCookieIsKept(t *testing.T) {
	get := func(url string) func() *http.Request {
		return func() *http.Request { return httptest.NewRequest(http.MethodGet, url, nil) }
	}
	forwarded := func(proto string) func() *http.Request {
		return func() *http.Request {
			r := droppedRequest()
			r.Header.Set("X-Forwarded-Proto", proto)
			return r
		}
	}
	for _, c := range []struct {
		name string
		cfg  Config
		req  func() *http.Request
	}{
		{"localhost", Config{}, get("http://localhost:8080/")},
		{"127.0.0.1", Config{}, get("http://127.0.0.1:8080/")},
		{"[::1]", Config{}, get("http://[::1]:8080/")},
		{"X-Forwarded-Proto https", Config{}, forwarded("https")},
		{"X-Forwarded-Proto HTTPS", Config{}, forwarded("HTTPS")},
		{"TLS", Config{}, get("https://shop.example:8080/")},
		{"InsecureCookies", Config{InsecureCookies: true}, droppedRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			if body := serve(t, newTestShop(t, Config{}).shop, droppedRequest()); !strings.Contains(body, bannerID) {
				t.Fatalf("no banner for plain HTTP to shop.example with Secure cookies:\n%s", body)
			}
			r := c.req()
			if c.name == "TLS" && r.TLS == nil {
				t.Fatal("the request has no TLS")
			}
			if body := serve(t, newTestShop(t, c.cfg).shop, r); strings.Contains(body, bannerID) {
				t.Fatalf("a banner, though the browser keeps the cookie:\n%s", body)
			}
		})
	}
}

func TestSecureCookieDropped(t *testing.T) {
	for _, c := range []struct {
		host    string
		proto   string // X-Forwarded-Proto
		dropped bool
	}{
		{"shop.example:8080", "", true},
		{"shop.example", "", true},
		{"shop.example:8080", "http", true},
		{"shop.example:8080", "https", false},
		{"shop.example:8080", "Https", false},
		{"localhost:8080", "", false},
		{"localhost", "", false},
		{"LocalHost:8080", "", false},
		{"shop.localhost:8080", "", false},
		{"localhost.example:8080", "", true},
		{"notlocalhost:8080", "", true},
		{"127.0.0.1:8080", "", false},
		{"127.8.9.10", "", false},
		{"[::1]:8080", "", false},
		{"[::1]", "", false},
		{"192.168.1.20:8080", "", true},
		{"0.0.0.0:8080", "", true},
		{"[fe80::1]:8080", "", true},
		{"", "", true},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = c.host
		if c.proto != "" {
			r.Header.Set("X-Forwarded-Proto", c.proto)
		}
		if got := secureCookieDropped(true, r); got != c.dropped {
			t.Errorf("Host %q, X-Forwarded-Proto %q: dropped %v, want %v", c.host, c.proto, got, c.dropped)
		}
		if secureCookieDropped(false, r) {
			t.Errorf("Host %q, X-Forwarded-Proto %q: an insecure cookie is dropped", c.host, c.proto)
		}
	}
}
