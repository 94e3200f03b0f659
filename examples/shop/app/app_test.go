package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// defaultCookie is the guest cookie's documented default name.
const defaultCookie = "__Host-anonymous_guest"

// testShop is a shop served over TLS (its cookies are Secure) on an
// in-memory store the test can inspect.
type testShop struct {
	shop  *Shop
	store *memstore.Store
	srv   *httptest.Server
}

func newTestShop(t *testing.T, cfg Config) *testShop {
	t.Helper()
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.HashKey == nil {
		cfg.HashKey = []byte("0123456789abcdef0123456789abcdef")
	}
	shop, err := New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(shop)
	t.Cleanup(srv.Close)
	return &testShop{shop: shop, store: store, srv: srv}
}

// browser is one visitor: a client with its own cookie jar.
type browser struct {
	t   *testing.T
	ts  *testShop
	c   *http.Client
	jar http.CookieJar
}

func (ts *testShop) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ts: ts, jar: jar, c: &http.Client{Transport: ts.srv.Client().Transport, Jar: jar, Timeout: 10 * time.Second}}
}

// page is what a visitor sees on a page, read off its HTML.
type page struct {
	status int
	body   string
	id     string // the user id in the footer
	name   string
	kind   string // "Guest" or "Signed in"
	cart   map[string]int
}

var (
	reID   = regexp.MustCompile(`id="user-id">([^<]*)<`)
	reName = regexp.MustCompile(`id="user-name">([^<]*)<`)
	reKind = regexp.MustCompile(`id="user-kind">([^<]*)<`)
	reLine = regexp.MustCompile(`data-product="([^"]+)" data-qty="(\d+)"`)
)

func parsePage(t *testing.T, resp *http.Response) *page {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := &page{status: resp.StatusCode, body: string(b), cart: map[string]int{}}
	if m := reID.FindStringSubmatch(p.body); m != nil {
		p.id = m[1]
	}
	if m := reName.FindStringSubmatch(p.body); m != nil {
		p.name = m[1]
	}
	if m := reKind.FindStringSubmatch(p.body); m != nil {
		p.kind = m[1]
	}
	for _, m := range reLine.FindAllStringSubmatch(p.body, -1) {
		n, _ := strconv.Atoi(m[2])
		p.cart[m[1]] = n
	}
	return p
}

func (b *browser) get(path string) *page {
	b.t.Helper()
	resp, err := b.c.Get(b.ts.srv.URL + path)
	if err != nil {
		b.t.Fatal(err)
	}
	return parsePage(b.t, resp)
}

// post submits a form as the page's forms do, following the redirect.
func (b *browser) post(path string, form url.Values) *page {
	b.t.Helper()
	resp, err := b.c.PostForm(b.ts.srv.URL+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	return parsePage(b.t, resp)
}

func (b *browser) add(product string) *page {
	b.t.Helper()
	return b.post("/cart/add", url.Values{"product": {product}})
}

func (b *browser) set(product string, qty int) *page {
	b.t.Helper()
	return b.post("/cart/set", url.Values{"product": {product}, "qty": {strconv.Itoa(qty)}})
}

func (b *browser) login(user, password string) *page {
	b.t.Helper()
	return b.post("/login", url.Values{"username": {user}, "password": {password}})
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.ts.srv.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// stored reports whether the guest is in the store.
func (ts *testShop) stored(t *testing.T, id string) bool {
	t.Helper()
	rec, err := ts.shop.guests.Record(context.Background(), id)
	switch {
	case err == nil:
		return !rec.Deleted // a deleted guest's record only reserves its id
	case errors.Is(err, anonymous.ErrNotFound):
		return false
	default:
		t.Fatalf("store.Get(%s): %v", id, err)
		return false
	}
}

// cart returns owner's cart as the shop keeps it: an account's in its
// Carts, a guest's in its data in the store.
func (ts *testShop) cart(t *testing.T, owner string) map[string]int {
	t.Helper()
	c, err := ts.shop.Cart(context.Background(), owner)
	if err != nil {
		t.Fatalf("Cart(%s): %v", owner, err)
	}
	return c
}

func wantStatus(t *testing.T, p *page, want int) {
	t.Helper()
	if p.status != want {
		t.Fatalf("status %d, want %d; body:\n%s", p.status, want, p.body)
	}
}

func wantCart(t *testing.T, p *page, want map[string]int) {
	t.Helper()
	if !maps.Equal(p.cart, want) {
		t.Fatalf("page shows cart %v, want %v", p.cart, want)
	}
}

func TestGuestIsGreetedByGeneratedName(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)

	resp, err := b.c.Get(ts.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	var guest *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == defaultCookie {
			guest = c
		}
	}
	p := parsePage(t, resp)
	wantStatus(t, p, http.StatusOK)
	if guest == nil || !guest.HttpOnly || !guest.Secure {
		t.Fatalf("guest cookie %+v: want one, HttpOnly and Secure", guest)
	}
	adj, animal, ok := strings.Cut(p.name, " ")
	if !ok || !slices.Contains(adjectives, adj) || !slices.Contains(animals, animal) {
		t.Fatalf("guest name %q is not an adjective and an animal from the word lists", p.name)
	}
	if p.kind != "Guest" || !strings.Contains(p.body, "Hello, "+p.name+"!") {
		t.Fatalf("page does not greet guest %q as a guest (kind %q)", p.name, p.kind)
	}
	if p.id == "" {
		t.Fatal("page shows no guest id")
	}

	again := b.get("/")
	if again.id != p.id || again.name != p.name {
		t.Fatalf("second visit is %s %q, want the same guest %s %q", again.id, again.name, p.id, p.name)
	}
	if !ts.stored(t, p.id) {
		t.Fatal("a returning guest is not in the store")
	}
	if other := ts.browser(t).get("/"); other.id == p.id {
		t.Fatal("another browser got the same guest")
	}
}

func TestCartAddAndRemove(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	id := b.get("/").id

	b.add("tea")
	b.add("mug")
	p := b.add("tea")
	wantStatus(t, p, http.StatusOK)
	wantCart(t, p, map[string]int{"tea": 2, "mug": 1})
	if !strings.Contains(p.body, `id="cart-total">$33.00<`) { // 2×9.50 + 14.00
		t.Fatalf("cart total is not $33.00:\n%s", p.body)
	}
	wantCart(t, b.set("tea", 5), map[string]int{"tea": 5, "mug": 1})
	wantCart(t, b.set("mug", 0), map[string]int{"tea": 5})
	wantCart(t, b.set("tea", 4), map[string]int{"tea": 4}) // the "−" button
	if got := ts.cart(t, id); !maps.Equal(got, map[string]int{"tea": 4}) {
		t.Fatalf("shop keeps cart %v for guest %s, want tea:4", got, id)
	}
	p = b.set("tea", 0)
	wantCart(t, p, map[string]int{})
	if !strings.Contains(p.body, "Your cart is empty.") {
		t.Fatal("an emptied cart does not say it is empty")
	}
}

func TestCartRejectsBadInput(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	id := b.get("/").id
	b.add("candle")

	for _, tc := range []struct {
		name, path string
		form       url.Values
		want       int
	}{
		{"unknown product", "/cart/add", url.Values{"product": {"unicorn"}}, http.StatusBadRequest},
		{"no product", "/cart/add", url.Values{}, http.StatusBadRequest},
		{"negative qty", "/cart/set", url.Values{"product": {"candle"}, "qty": {"-1"}}, http.StatusBadRequest},
		{"huge qty", "/cart/set", url.Values{"product": {"candle"}, "qty": {"100"}}, http.StatusBadRequest},
		{"word qty", "/cart/set", url.Values{"product": {"candle"}, "qty": {"many"}}, http.StatusBadRequest},
		{"oversized form", "/cart/add", url.Values{"product": {"candle"}, "pad": {strings.Repeat("x", 8<<10)}}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, b.post(tc.path, tc.form), tc.want)
		})
	}
	for _, path := range []string{"/cart/add", "/cart/set", "/logout"} {
		if p := b.get(path); p.status != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: status %d, want 405", path, p.status)
		}
	}
	if got := ts.cart(t, id); !maps.Equal(got, map[string]int{"candle": 1}) {
		t.Fatalf("bad requests changed the cart to %v", got)
	}
}

func TestCrossSiteFormIsRefused(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	id := b.get("/").id
	req, _ := http.NewRequest(http.MethodPost, ts.srv.URL+"/cart/add", strings.NewReader("product=tea"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: status %d, want 403", resp.StatusCode)
	}
	if got := ts.cart(t, id); len(got) != 0 {
		t.Fatalf("a cross-site POST changed the cart to %v", got)
	}
}

func TestLoginMergesGuestCartIntoAccountCart(t *testing.T) {
	ts := newTestShop(t, Config{})

	// Bob builds an account cart first, then leaves.
	bob := ts.browser(t)
	bob.get("/")
	bob.login("bob", "builder")
	bob.add("candle")
	wantCart(t, bob.add("tea"), map[string]int{"candle": 1, "tea": 1})
	bob.post("/logout", nil)

	for _, tc := range []struct {
		user, password, name string
		guestAdds            []string
		want                 map[string]int
	}{
		// Alice's account starts with one mug (the shop's seed).
		{"alice", "wonderland", "Alice", []string{"mug", "cactus", "mug"}, map[string]int{"mug": 3, "cactus": 1}},
		{"bob", "builder", "Bob", []string{"candle", "candle", "socks"}, map[string]int{"candle": 3, "tea": 1, "socks": 1}},
	} {
		t.Run(tc.user, func(t *testing.T) {
			b := ts.browser(t)
			guest := b.get("/")
			for _, p := range tc.guestAdds {
				b.add(p)
			}
			if !ts.stored(t, guest.id) {
				t.Fatal("the guest is not in the store before login")
			}

			p := b.login(tc.user, tc.password)
			wantStatus(t, p, http.StatusOK)
			if p.kind != "Signed in" || p.name != tc.name || p.id != tc.user {
				t.Fatalf("after login the page shows %q %q (%s), want %s signed in", p.name, p.kind, p.id, tc.name)
			}
			wantCart(t, p, tc.want)
			if !strings.Contains(p.body, "from your guest cart (as "+guest.name+")") {
				t.Fatalf("no notice about the moved cart:\n%s", p.body)
			}
			if got := ts.cart(t, tc.user); !maps.Equal(got, tc.want) {
				t.Fatalf("account cart is %v, want %v", got, tc.want)
			}
			if got := ts.cart(t, guest.id); len(got) != 0 {
				t.Fatalf("guest cart still holds %v", got)
			}
			if ts.stored(t, guest.id) {
				t.Fatal("the guest is still in the store after login")
			}
			if c := b.cookie(defaultCookie); c != nil {
				t.Fatalf("the guest cookie survived the login: %v", c)
			}
			// The notice is shown once; the cart stays.
			again := b.get("/")
			wantCart(t, again, tc.want)
			if strings.Contains(again.body, `id="notice"`) {
				t.Fatal("the moved-cart notice is shown twice")
			}
		})
	}
}

func TestLoginCookie(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	b.get("/")
	b.login("alice", "wonderland")
	c := b.cookie(loginCookie)
	if c == nil {
		t.Fatal("no login cookie")
	}
	// The jar hides attributes; check them on the wire.
	resp, err := ts.browser(t).c.PostForm(ts.srv.URL+"/login", url.Values{"username": {"ALICE "}, "password": {"wonderland"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var set *http.Cookie
	for _, c := range resp.Request.Response.Cookies() { // the 303's cookies
		if c.Name == loginCookie {
			set = c
		}
	}
	if set == nil || !set.HttpOnly || !set.Secure || set.SameSite != http.SameSiteLaxMode {
		t.Fatalf("login cookie %+v: want HttpOnly, Secure, SameSite=Lax", set)
	}
}

func TestWrongPasswordKeepsTheGuest(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	guest := b.get("/")
	b.add("tea")

	for _, tc := range []struct{ user, password string }{
		{"alice", "builder"}, {"alice", ""}, {"mallory", "wonderland"}, {"", ""},
	} {
		p := b.login(tc.user, tc.password)
		wantStatus(t, p, http.StatusUnauthorized)
		if !strings.Contains(p.body, "Wrong username or password.") {
			t.Fatalf("%s/%s: no error message", tc.user, tc.password)
		}
		if tc.password != "" && strings.Contains(p.body, `value="`+tc.password+`"`) {
			t.Fatalf("the page echoes the password %q", tc.password)
		}
	}
	if b.cookie(loginCookie) != nil {
		t.Fatal("a failed login set the login cookie")
	}
	p := b.get("/")
	if p.id != guest.id || p.kind != "Guest" {
		t.Fatalf("after failed logins the visitor is %s (%s), want guest %s", p.id, p.kind, guest.id)
	}
	wantCart(t, p, map[string]int{"tea": 1})
}

func TestForgedLoginCookieIsNobody(t *testing.T) {
	ts := newTestShop(t, Config{})
	other := newTestShop(t, Config{HashKey: []byte("another-32-byte-key-for-the-test")})
	forged, err := other.shop.login.Encode(loginCookie, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{forged, "alice", "", strings.Repeat("A", 4000), "%%%"} {
		req, _ := http.NewRequest(http.MethodGet, ts.srv.URL+"/", nil)
		req.Header.Set("Cookie", loginCookie+"="+v)
		resp, err := ts.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		p := parsePage(t, resp)
		wantStatus(t, p, http.StatusOK)
		if p.kind != "Guest" {
			t.Fatalf("login cookie %.20q made the visitor %q, want a guest", v, p.kind)
		}
	}
}

func TestLogoutGivesANewGuest(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	guest := b.get("/")
	b.login("bob", "builder")
	b.add("socks")

	p := b.post("/logout", nil)
	wantStatus(t, p, http.StatusOK)
	if p.kind != "Guest" || p.id == "" || p.id == guest.id || p.id == "bob" {
		t.Fatalf("after logout the visitor is %q %s, want a new guest (old guest %s)", p.kind, p.id, guest.id)
	}
	wantCart(t, p, map[string]int{})
	if b.cookie(loginCookie) != nil {
		t.Fatal("logout kept the login cookie")
	}
	// Logging back in finds the account's cart.
	wantCart(t, b.login("bob", "builder"), map[string]int{"socks": 1})
}

func TestForgetMeAsksThenForgets(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	guest := b.get("/")
	b.add("cactus")
	if !strings.Contains(guest.body, `<a id="forget-me" href="/forget">`) {
		t.Fatal("the guest's page has no Forget me link")
	}

	ask := b.get("/forget")
	wantStatus(t, ask, http.StatusOK)
	for _, want := range []string{
		"This deletes the guest <strong>" + guest.name + "</strong>",
		"with its cart of 1 item ($7.50)",
		`<input type="hidden" name="guest" value="` + guest.id + `">`,
		`id="forget-confirm"`, `id="forget-cancel" href="/"`,
	} {
		if !strings.Contains(ask.body, want) {
			t.Fatalf("the confirmation lacks %s:\n%s", want, ask.body)
		}
	}
	if ask.id != guest.id || !ts.stored(t, guest.id) {
		t.Fatal("asking to confirm changed the guest")
	}

	p := b.post("/forget", url.Values{"guest": {guest.id}})
	wantStatus(t, p, http.StatusOK)
	if p.kind != "Guest" || p.id == "" || p.id == guest.id {
		t.Fatalf("after Forget me the visitor is %q %s, want a new guest (old %s)", p.kind, p.id, guest.id)
	}
	wantCart(t, p, map[string]int{})
	for _, want := range []string{"We have forgotten you: the guest " + guest.name, "You are a new guest now: " + p.name + "."} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("after Forget me the page does not say %q:\n%s", want, p.body)
		}
	}
	if ts.stored(t, guest.id) {
		t.Fatal("the guest is still in the store after Forget me")
	}
	if got := ts.cart(t, guest.id); len(got) != 0 {
		t.Fatalf("the forgotten guest's cart is still kept: %v", got)
	}
	// The cart was the guest's data: the record the deleted guest leaves,
	// which only reserves its id, holds none of it.
	if rec, err := ts.shop.guests.Record(context.Background(), guest.id); err == nil && (!rec.Deleted || len(rec.Data) > 0) {
		t.Fatalf("the forgotten guest's record is %+v, want a deleted one without data", rec)
	}
	if again := b.get("/"); again.id != p.id || strings.Contains(again.body, `id="notice"`) {
		t.Fatalf("the next page is guest %s (want %s) or repeats the notice", again.id, p.id)
	}
}

func TestDeleteEndpointIsMounted(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	guest := b.get("/")
	b.add("cactus")
	resp, err := b.c.Post(ts.srv.URL+BasePath+"/delete-anonymous-user", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"success":true`) {
		t.Fatalf("delete-anonymous-user: %d %s", resp.StatusCode, body)
	}
	if ts.stored(t, guest.id) {
		t.Fatal("the guest is still in the store")
	}
	if p := b.get("/"); p.kind != "Guest" || p.id == "" || p.id == guest.id {
		t.Fatalf("after the endpoint the visitor is %q %s, want a new guest (old %s)", p.kind, p.id, guest.id)
	}
}

func TestForgetMeFromAStaleTab(t *testing.T) {
	ts := newTestShop(t, Config{})

	t.Run("signed in since", func(t *testing.T) {
		b := ts.browser(t)
		guest := b.get("/")
		b.login("alice", "wonderland")
		// The link on the old page leads to who the visitor is now.
		ask := b.get("/forget")
		if ask.kind != "Signed in" || strings.Contains(ask.body, `id="forget-confirm"`) ||
			!strings.Contains(ask.body, "You are signed in as Alice, so there is no guest to forget") {
			t.Fatalf("a signed-in visitor asked to forget sees:\n%s", ask.body)
		}
		// A confirmation left open from before the login deletes nothing.
		p := b.post("/forget", url.Values{"guest": {guest.id}})
		wantStatus(t, p, http.StatusOK)
		if p.kind != "Signed in" || p.id != "alice" {
			t.Fatalf("after a stale Forget me the visitor is %q %s, want alice", p.kind, p.id)
		}
		if !strings.Contains(p.body, `role="alert"`) || !strings.Contains(p.body, "Nothing was forgotten: this browser is signed in as Alice now") {
			t.Fatalf("a stale Forget me does not say why nothing happened:\n%s", p.body)
		}
		wantCart(t, p, map[string]int{"mug": 1})
	})

	t.Run("guest already forgotten", func(t *testing.T) {
		b := ts.browser(t)
		old := b.get("/")
		now := b.post("/forget", url.Values{"guest": {old.id}})
		b.add("tea")
		p := b.post("/forget", url.Values{"guest": {old.id}})
		if p.id != now.id || !ts.stored(t, now.id) {
			t.Fatalf("a second Forget me for guest %s deleted the new guest %s (now %s)", old.id, now.id, p.id)
		}
		if !strings.Contains(p.body, "Nothing was forgotten: the guest on that page was already gone") {
			t.Fatalf("a second Forget me does not say why nothing happened:\n%s", p.body)
		}
		wantCart(t, p, map[string]int{"tea": 1})
	})
}

func TestLogoutSaysSo(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	b.get("/")
	b.login("bob", "builder")
	p := b.post("/logout", nil)
	for _, want := range []string{"You have signed out of Bob&#39;s account", "You are a new guest now: " + p.name + "."} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("after logout the page does not say %q:\n%s", want, p.body)
		}
	}
	// A Log out button on a page older than the logout.
	if p := b.post("/logout", nil); !strings.Contains(p.body, "You were not signed in") {
		t.Fatalf("logging out a guest says nothing:\n%s", p.body)
	}
}

func TestCartChangesSaySo(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	b.get("/")
	for _, tc := range []struct {
		do   func() *page
		want string
	}{
		{func() *page { return b.add("tea") }, "Added Lapsang Tea to your cart."},
		{func() *page { return b.add("tea") }, "Added another Lapsang Tea to your cart: you have 2."},
		{func() *page { return b.set("tea", 1) }, "You now have 1 × Lapsang Tea in your cart."},
		{func() *page { return b.set("tea", 0) }, "Removed Lapsang Tea from your cart."},
	} {
		if p := tc.do(); !strings.Contains(p.body, `role="status"`) || !strings.Contains(p.body, tc.want+` <a href="#cart">See your cart</a>`) {
			t.Fatalf("the page does not say %q with a link to the cart:\n%s", tc.want, p.body)
		}
	}
}

func TestAddingBeyondTheMostSaysSo(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	b.get("/")
	b.set("tea", maxQty)
	p := b.add("tea")
	wantCart(t, p, map[string]int{"tea": maxQty})
	if !strings.Contains(p.body, `role="alert"`) ||
		!strings.Contains(p.body, fmt.Sprintf("You already have %d × Lapsang Tea in your cart, the most one order can hold", maxQty)) {
		t.Fatalf("adding beyond %d does not say so:\n%s", maxQty, p.body)
	}
}

func TestLoginPageWhenSignedIn(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	b.get("/")
	b.login("alice", "wonderland")
	resp, err := b.c.Get(ts.srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the login page answers Cache-Control %q, want no-store (Back must ask again)", cc)
	}
	p := parsePage(t, resp)
	wantStatus(t, p, http.StatusOK)
	if strings.Contains(p.body, `id="password"`) || strings.Contains(p.body, `action="/login"`) {
		t.Fatal("a signed-in visitor is shown the sign-in form")
	}
	if !strings.Contains(p.body, "You are signed in as <strong>Alice</strong>") || !strings.Contains(p.body, `id="back-to-shop" href="/"`) {
		t.Fatalf("the login page does not tell a signed-in visitor who they are:\n%s", p.body)
	}
}

func TestSignedInPageHasNoForgetMe(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	b.get("/")
	p := b.login("alice", "wonderland")
	if strings.Contains(p.body, `id="forget-me"`) {
		t.Fatal("a signed-in page offers Forget me")
	}
	if !strings.Contains(p.body, `id="log-out"`) {
		t.Fatal("a signed-in page offers no Log out")
	}
}

func TestInsecureCookies(t *testing.T) {
	ts := newTestShop(t, Config{InsecureCookies: true})
	resp, err := ts.srv.Client().Get(ts.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if len(cs) == 0 {
		t.Fatal("no cookie")
	}
	guest := false
	for _, c := range cs {
		if c.Secure {
			t.Fatalf("cookie %s is Secure with InsecureCookies", c.Name)
		}
		guest = guest || c.Name == "anonymous_guest"
		if c.Name == defaultCookie {
			t.Fatalf("an insecure guest cookie is named %s, which must be Secure", c.Name)
		}
	}
	if !guest {
		t.Fatalf("no guest cookie anonymous_guest among %v", cs)
	}
}

// brokenStore is a guest store that is down, as a Redis outage looks to the
// shop.
type brokenStore struct{}

var errDown = errors.New("store is down")

func (brokenStore) Create(context.Context, string, anonymous.Entry) error { return errDown }
func (brokenStore) Get(context.Context, string) (anonymous.Entry, error) {
	return anonymous.Entry{}, errDown
}
func (brokenStore) Update(context.Context, string, anonymous.Entry) error { return errDown }

func TestStoreOutageIsAnsweredCleanly(t *testing.T) {
	shop, err := New(brokenStore{}, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(shop)
	defer srv.Close()
	ts := &testShop{shop: shop, srv: srv}
	b := ts.browser(t)

	// The first visit needs no store (the cookie carries the new guest).
	if p := b.get("/"); p.status != http.StatusOK || p.kind != "Guest" {
		t.Fatalf("first visit: %d %q", p.status, p.kind)
	}
	p := b.get("/")
	wantStatus(t, p, http.StatusOK)
	if !strings.Contains(p.body, "We cannot see your cart right now.") {
		t.Fatalf("no outage notice:\n%s", p.body)
	}
	wantStatus(t, b.add("tea"), http.StatusServiceUnavailable)
	if b.cookie(defaultCookie) == nil {
		t.Fatal("the outage cost the visitor its guest cookie")
	}
}

func TestPagesHaveTheirOwnTitles(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	title := regexp.MustCompile(`<title>([^<]*)</title>`)
	seen := map[string]string{}
	for _, path := range []string{"/", "/login"} {
		m := title.FindStringSubmatch(b.get(path).body)
		if m == nil {
			t.Fatalf("%s has no <title>", path)
		}
		if other, ok := seen[m[1]]; ok {
			t.Fatalf("%s and %s share the title %q", other, path, m[1])
		}
		seen[m[1]] = path
	}
}

func TestButtonsNameTheirProduct(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	b.get("/")
	p := b.add("tea")
	for _, want := range []string{
		`id="add-tea">Add to cart<span class="vh">: Lapsang Tea</span>`,
		`aria-label="One less Lapsang Tea"`,
		`aria-label="One more Lapsang Tea"`,
		`id="remove-tea">Remove<span class="vh"> Lapsang Tea</span>`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}

func TestLoginErrorIsAnnouncedAndTiedToTheFields(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	b.get("/")
	p := b.login("alice", "nope")
	wantStatus(t, p, http.StatusUnauthorized)
	if !strings.Contains(p.body, `id="login-error" role="alert"`) {
		t.Error("the login error is not an alert")
	}
	for _, field := range []string{"username", "password"} {
		re := regexp.MustCompile(`<input[^>]* id="` + field + `"[^>]*>`)
		input := re.FindString(p.body)
		if !strings.Contains(input, `aria-invalid="true"`) || !strings.Contains(input, `aria-describedby="login-error"`) {
			t.Errorf("the %s field after a failed login is %s, want aria-invalid and aria-describedby=login-error", field, input)
		}
	}
	if strings.Contains(b.get("/login").body, `aria-invalid`) {
		t.Error("a fresh login form marks its fields invalid")
	}
}

func TestForgedFlashIsIgnored(t *testing.T) {
	ts := newTestShop(t, Config{})
	other := newTestShop(t, Config{HashKey: []byte("another-32-byte-key-for-the-test")})
	forged, err := other.shop.flash.Encode(flashCookie, flash{Kind: flashSignedOut, Arg: "Mallory"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{forged, "signed-out", "", strings.Repeat("A", 4000)} {
		req, _ := http.NewRequest(http.MethodGet, ts.srv.URL+"/", nil)
		req.Header.Set("Cookie", flashCookie+"="+v)
		resp, err := ts.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		p := parsePage(t, resp)
		wantStatus(t, p, http.StatusOK)
		if strings.Contains(p.body, `id="notice"`) {
			t.Fatalf("flash cookie %.20q shows a notice", v)
		}
	}
}

func TestCartLivesInTheGuestsData(t *testing.T) {
	ts := newTestShop(t, Config{})
	b := ts.browser(t)
	// A first visit that adds at once: the guest is stored with its cart.
	p := b.add("socks")
	wantStatus(t, p, http.StatusOK)
	wantCart(t, p, map[string]int{"socks": 1})
	b.add("tea")
	rec, err := ts.shop.guests.Record(context.Background(), p.id)
	if err != nil {
		t.Fatalf("the guest who added to the cart is not stored: %v", err)
	}
	var d guestData
	if err := json.Unmarshal(rec.Data, &d); err != nil || !maps.Equal(d.Cart, map[string]int{"socks": 1, "tea": 1}) {
		t.Fatalf("the guest's data is %q (%v), want its cart", rec.Data, err)
	}

	// Another shop on the same store and keys, as after a restart, shows
	// the same guest with the same cart.
	again, err := New(ts.store, Config{HashKey: []byte("0123456789abcdef0123456789abcdef"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(again)
	defer srv.Close()
	b.ts = &testShop{shop: again, store: ts.store, srv: srv} // the jar's cookies are the host's, whatever the port
	b.c.Transport = srv.Client().Transport
	p2 := b.get("/")
	if p2.id != p.id {
		t.Fatalf("after a restart the visitor is %s, want guest %s", p2.id, p.id)
	}
	wantCart(t, p2, map[string]int{"socks": 1, "tea": 1})
}

func TestMoveCartMergesEachGuestOnce(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testMoveCartMergesEachGuestOnce(t, NewMemoryCarts()) })
	t.Run("redis", func(t *testing.T) {
		client, prefix := testRedis(t)
		testMoveCartMergesEachGuestOnce(t, NewRedisCarts(client, prefix))
	})
}

func testMoveCartMergesEachGuestOnce(t *testing.T, carts Carts) {
	ts := newTestShop(t, Config{Carts: carts})
	ctx := context.Background()
	ev := anonymous.LinkEvent{
		AnonymousUser: anonymous.Account{User: &anonymous.User{ID: "01JGUEST0000000000000000AA", Name: "Quiet Otter", IsAnonymous: true}},
		NewUser:       anonymous.Account{User: &anonymous.User{ID: "alice", Name: "Alice"}},
		Data:          []byte(`{"cart":{"mug":2,"tea":1}}`),
	}
	// The package may run the callback again for a guest (its final write
	// failed, say): the cart is added once.
	for range 3 {
		if err := ts.shop.moveCart(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{"mug": 3, "tea": 1} // alice's seeded mug, and the guest's
	if got := ts.cart(t, "alice"); !maps.Equal(got, want) {
		t.Fatalf("after the callback ran three times alice's cart is %v, want %v", got, want)
	}
	c, _ := ts.shop.carts.Get(ctx, "alice")
	if !strings.Contains(c.Notice, "We moved 3 items from your guest cart (as Quiet Otter)") {
		t.Fatalf("alice's notice is %q", c.Notice)
	}
	// Another guest's cart is merged too.
	ev.AnonymousUser.User = &anonymous.User{ID: "01JGUEST0000000000000000BB", Name: "Brave Heron", IsAnonymous: true}
	ev.Data = []byte(`{"cart":{"tea":1}}`)
	if err := ts.shop.moveCart(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if got := ts.cart(t, "alice"); got["tea"] != 2 {
		t.Fatalf("a second guest's tea was not merged: %v", got)
	}
	// Data that is no cart moves nothing and does not hold the link up.
	ev.AnonymousUser.User = &anonymous.User{ID: "01JGUEST0000000000000000CC", Name: "Sleepy Fox", IsAnonymous: true}
	ev.Data = []byte(`not json`)
	if err := ts.shop.moveCart(ctx, ev); err != nil {
		t.Fatalf("moveCart on data that is no cart: %v, want nil", err)
	}
}

// Past the package's default budget of 20 guests stored at once per
// address, new visitors still keep their carts: in their cookies, until the
// budget lets their guests be stored.
func TestAddingOverTheBudgetKeepsTheCart(t *testing.T) {
	ts := newTestShop(t, Config{})
	for i := range 25 {
		b := ts.browser(t)
		if p := b.add("tea"); len(p.cart) != 1 || strings.Contains(p.body, `role="alert"`) {
			t.Fatalf("new visitor %d: the cart is %v after adding a tea", i+1, p.cart)
		}
		if i == 24 {
			wantCart(t, b.add("tea"), map[string]int{"tea": 2})
		}
	}
	// An account is not a guest: its cart does not count against the budget.
	b := ts.browser(t)
	b.login("bob", "builder")
	wantCart(t, b.add("tea"), map[string]int{"tea": 1})
}

func TestConcurrentAddsAllCount(t *testing.T) {
	ts := newTestShop(t, Config{})
	for _, who := range []string{"guest", "bob"} {
		t.Run(who, func(t *testing.T) {
			b := ts.browser(t)
			b.get("/")
			if who == "bob" {
				b.login("bob", "builder")
			} else {
				b.get("/") // stored now
			}
			const n = 16
			var wg sync.WaitGroup
			for range n { // many tabs at once
				wg.Go(func() {
					resp, err := b.c.PostForm(ts.srv.URL+"/cart/add", url.Values{"product": {"candle"}})
					if err == nil {
						resp.Body.Close()
					}
				})
			}
			wg.Wait()
			if p := b.get("/"); p.cart["candle"] != n {
				t.Fatalf("%d concurrent adds gave a cart of %v", n, p.cart)
			}
		})
	}
}
