package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/examples/shop/app"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/redisstore"
)

// guestCookie is the package's default guest cookie name, which the shop keeps.
const guestCookie = "__Host-anonymous_guest"

// viewports are the window sizes every flow runs at: a phone, a narrow
// window or small tablet, and a laptop.
var viewports = []viewport{{390, 844}, {700, 900}, {1280, 800}}

type viewport struct{ W, H int64 }

func (v viewport) String() string { return fmt.Sprintf("%dx%d", v.W, v.H) }

// flowTimeout bounds one whole browser flow; stepTimeout one step of it.
const (
	flowTimeout = 2 * time.Minute
	stepTimeout = 20 * time.Second
)

// TestShopInBrowser walks a visitor through the shop at each window size,
// on the in-memory stores and on Redis, where the shop is also restarted in
// the middle of a guest's visit. On every page it visits, the page must lay
// out within the window (nothing wider than it, no product card
// overlapping another or narrower than its content) and axe-core must find
// no serious or critical WCAG 2 A or AA violation.
func TestShopInBrowser(t *testing.T) {
	browser := findBrowser(t)
	axe := axeScript(t)
	for _, vp := range viewports {
		t.Run("memory/"+vp.String(), func(t *testing.T) {
			store, err := memstore.New(memstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			carts := app.NewMemoryCarts()
			runShopFlow(t, browser, axe, vp, backend{open: func() (anonymous.Store, app.Carts) { return store, carts }})
		})
	}
	for _, vp := range viewports {
		t.Run("redis/"+vp.String(), func(t *testing.T) {
			runShopFlow(t, browser, axe, vp, redisBackend(t))
		})
	}
}

// backend gives the shop its guest store and its accounts' carts.
type backend struct {
	// open returns them; with durable, each call connects anew to the
	// same ones, as a restarted shop does.
	open func() (anonymous.Store, app.Carts)
	// durable says that the stores outlive the shop, so the flow restarts
	// the shop in the middle of a guest's visit.
	durable bool
}

// findBrowser returns the Chromium to drive. Without one the test skips,
// loudly, except in CI or with ANON_REQUIRE_BROWSER=1, where it fails.
func findBrowser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROME_PATH"); p != "" {
		abs, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("CHROME_PATH=%s: %v", p, err)
		}
		return abs
	}
	candidates := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := "NO BROWSER: none of " + strings.Join(candidates, ", ") + " is on PATH (or set CHROME_PATH); " +
		"install one with: apt-get install -y chromium"
	if os.Getenv("CI") != "" || os.Getenv("ANON_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
	return ""
}

// redisBackend keeps the shop's guests and accounts' carts on REDIS_URL
// under a random key prefix, whose keys are removed at the end. Each open
// is a new client on the same keys. Without a reachable Redis the test
// skips, loudly, unless ANON_REQUIRE_REDIS=1, where it fails.
func redisBackend(t *testing.T) backend {
	t.Helper()
	prefix := redistest.Prefix(t, redistest.Client(t))
	open := func() (anonymous.Store, app.Carts) {
		c := redis.NewClient(redistest.Options(t))
		t.Cleanup(func() { c.Close() })
		s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return s, app.NewRedisCarts(c, prefix)
	}
	return backend{open: open, durable: true}
}

var (
	shotsOnce sync.Once
	shotsDir  string
	shotsErr  error
)

// screenshotDir is where the flows write their screenshots: $E2E_SCREENSHOTS,
// or a new folder under the system's temporary folder, kept after the test.
func screenshotDir(t *testing.T) string {
	t.Helper()
	shotsOnce.Do(func() {
		if d := os.Getenv("E2E_SCREENSHOTS"); d != "" {
			shotsDir, shotsErr = d, os.MkdirAll(d, 0o755)
			return
		}
		shotsDir, shotsErr = os.MkdirTemp("", "anonymous-e2e-screenshots-")
	})
	if shotsErr != nil {
		t.Fatalf("screenshot folder: %v", shotsErr)
	}
	return shotsDir
}

// shopPage is what the shop's page shows, read in the browser.
type shopPage struct {
	Path   string         `json:"path"`
	ID     string         `json:"id"`
	Name   string         `json:"name"`
	Kind   string         `json:"kind"`
	Cart   map[string]int `json:"cart"`
	Notice string         `json:"notice"`
	// NoticeShown says the notice is on screen where the page opens, in
	// text of at least 15px.
	NoticeShown bool `json:"noticeShown"`
	Form        bool `json:"form"` // the page has the sign-in form
}

const readPage = `(() => {
  const text = (sel) => (document.querySelector(sel)?.textContent ?? "").trim().replace(/\s+/g, " ");
  const cart = {};
  for (const li of document.querySelectorAll("#cart li[data-product]")) cart[li.dataset.product] = Number(li.dataset.qty);
  const n = document.querySelector("#notice");
  let shown = false;
  if (n) {
    const r = n.getBoundingClientRect(), st = getComputedStyle(n);
    shown = r.width > 0 && r.height > 0 && r.top >= 0 && r.bottom <= innerHeight &&
      st.visibility === "visible" && parseFloat(st.fontSize) >= 15;
  }
  return {path: location.pathname, id: text("#user-id"), name: text("#user-name"), kind: text("#user-kind"), cart,
          notice: text("#notice"), noticeShown: shown, form: document.querySelector("#password") !== null};
})()`

var guestName = regexp.MustCompile(`^[A-Z][a-z]+ [A-Z][a-z]+$`)

// tab drives one browser tab against the shop.
type tab struct {
	t     *testing.T
	ctx   context.Context
	vp    viewport
	axe   string
	base  string
	shots string
	label string
}

// step runs fn with a step deadline, failing the test on error.
func (b *tab) step(what string, fn func(ctx context.Context) error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// load runs a navigation (a Navigate, a Reload or a click on a link or a
// form's button) and waits for the page it leads to, which must be a 200.
func (b *tab) load(what string, act chromedp.Action[chromedp.Void]) shopPage {
	b.t.Helper()
	return b.loadStatus(what, act, http.StatusOK)
}

// loadStatus is load for a page answered with status want.
func (b *tab) loadStatus(what string, act chromedp.Action[chromedp.Void], want int64) shopPage {
	b.t.Helper()
	b.step(what, func(ctx context.Context) error {
		resp, err := chromedp.RunResponse(ctx, act)
		if err != nil {
			return err
		}
		if resp.Status != want {
			return fmt.Errorf("%s answered %d %s, want %d", resp.URL, resp.Status, resp.StatusText, want)
		}
		return nil
	})
	return b.read()
}

func (b *tab) read() shopPage {
	b.t.Helper()
	var p shopPage
	b.step("reading the page", func(ctx context.Context) error {
		var err error
		p, err = chromedp.Run(ctx, chromedp.Evaluate[shopPage](readPage))
		return err
	})
	return p
}

func (b *tab) click(id string) shopPage {
	b.t.Helper()
	return b.load("clicking #"+id, chromedp.Click(chromedp.ID(id)))
}

// back goes Back in the tab's history, as the browser's button does.
func (b *tab) back() shopPage {
	b.t.Helper()
	return b.load("going Back", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		h, err := cdp.Call(ctx, t, page.GetNavigationHistory, cdp.Empty{})
		if err != nil {
			return err
		}
		if h.CurrentIndex < 1 || h.CurrentIndex >= int64(len(h.Entries)) {
			return fmt.Errorf("no page to go back to (entry %d of %d)", h.CurrentIndex, len(h.Entries))
		}
		_, err = cdp.Call(ctx, t, page.NavigateToHistoryEntry, page.NavigateToHistoryEntryParams{EntryID: h.Entries[h.CurrentIndex-1].ID})
		return err
	}))
}

// signIn fills the sign-in form on the page and sends it.
func (b *tab) signIn(user, password string, status int64) shopPage {
	b.t.Helper()
	b.step("filling the sign-in form", func(ctx context.Context) error {
		return chromedp.Do(ctx,
			chromedp.Evaluate[chromedp.Void](`document.getElementById("username").value = ""`),
			chromedp.SendKeys(chromedp.ID("username"), user),
			chromedp.SendKeys(chromedp.ID("password"), password),
		)
	})
	return b.loadStatus("signing in as "+user, chromedp.Click(chromedp.ID("sign-in-submit")), status)
}

// newTab opens another tab of the same browser (same cookies) on path.
func (b *tab) newTab(path string) *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx) // a new target, same browser context
	b.t.Cleanup(cancel)
	// Open the tab outside any step deadline: the first action's context owns it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(b.vp.W, b.vp.H)); err != nil {
		b.t.Fatalf("opening a tab: %v", err)
	}
	b2 := *b
	b2.ctx = ctx
	b2.load("opening "+path+" in a new tab", chromedp.Navigate(b.base+path))
	return &b2
}

// check measures the page's layout and runs axe-core on it, failing the
// test on a layout problem or a serious or critical violation; lesser
// violations are logged.
func (b *tab) check(what string) {
	b.t.Helper()
	var layout []string
	var violations []axeViolation
	b.step("checking "+what, func(ctx context.Context) error {
		var err error
		layout, violations, err = audit(ctx, b.axe)
		return err
	})
	var bad []string
	for _, v := range violations {
		if serious(v) {
			bad = append(bad, v.String())
		} else {
			b.t.Logf("%s at %s: axe-core: %s", what, b.vp, v)
		}
	}
	if len(layout) > 0 || len(bad) > 0 {
		shot := b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s at %s (screenshot %s):\nlayout:\n\t%s\naxe-core, serious or critical:\n\t%s",
			what, b.vp, shot, strings.Join(layout, "\n\t"), strings.Join(bad, "\n\t"))
	}
}

func (b *tab) screenshot(name string) string {
	b.t.Helper()
	var png []byte
	b.step("screenshot "+name, func(ctx context.Context) error {
		var err error
		png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
		return err
	})
	path := filepath.Join(b.shots, b.label+"-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return path
}

// cookies returns the browser's cookies for the shop, HttpOnly ones included.
func (b *tab) cookies() map[string]*network.Cookie {
	b.t.Helper()
	out := map[string]*network.Cookie{}
	b.step("reading the browser's cookies", func(ctx context.Context) error {
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base}})
		for _, c := range res.Cookies {
			out[c.Name] = c
		}
		return err
	})
	return out
}

func samePage(a, b shopPage) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Kind == b.Kind && maps.Equal(a.Cart, b.Cart)
}

// guestState reports whether the store holds the guest, failing on a store error.
func guestStored(t *testing.T, store anonymous.Store, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	guests, err := anonymous.New(store, anonymous.Options{Keys: []anonymous.Key{{Hash: []byte("a key that only reads guests, 32")}}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := guests.Record(ctx, id)
	switch {
	case err == nil:
		return !rec.Deleted // a deleted guest's record only reserves its id
	case errors.Is(err, anonymous.ErrNotFound):
		return false
	default:
		t.Fatalf("Record(%s): %v", id, err)
		return false
	}
}

// runShopFlow serves the shop on be and walks one visitor through it in
// headless Chromium with a vp-sized window: guest, cart, reload, second
// tab, a restart of the shop when be is durable, a failed and a good login
// with the cart merged, Back to the login page, logout, Forget me with its
// confirmation, and Forget me from tabs left open from before a login. It
// checks the layout and accessibility of each kind of page on the way.
func runShopFlow(t *testing.T, browser, axe string, vp viewport, be backend) {
	newShop := func() (*app.Shop, anonymous.Store) {
		store, carts := be.open()
		shop, err := app.New(store, app.Config{
			HashKey: []byte("e2e-hash-key-of-exactly-32-bytes"),
			Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
			Carts:   carts,
		})
		if err != nil {
			t.Fatal(err)
		}
		return shop, store
	}
	shop, store := newShop()
	// Plain HTTP on 127.0.0.1, Secure cookies kept: browsers treat loopback
	// as a secure context, as docs/demo.md says.
	srv := httptest.NewServer(shop)
	t.Cleanup(srv.Close)
	// restart stops the shop and starts a new one on the same address, with
	// new connections to the same stores, as a redeploy does.
	restart := func() {
		t.Helper()
		addr := srv.Listener.Addr().String()
		srv.Close()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listening again on %s: %v", addr, err)
		}
		shop, store = newShop()
		srv = httptest.NewUnstartedServer(shop)
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(srv.Close)
	}

	ctx, cancel := context.WithTimeout(context.Background(), flowTimeout)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(vp.W), int(vp.H)),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	// The first action starts the browser: give it the flow's deadline, not a step's.
	if err := chromedp.Do(tabCtx, chromedp.EmulateViewport(vp.W, vp.H)); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}

	shots := screenshotDir(t)
	t.Logf("screenshots of %s go to %s", t.Name(), shots)
	label := strings.ReplaceAll(t.Name(), "/", "-")
	b := &tab{t: t, ctx: tabCtx, vp: vp, axe: axe, base: srv.URL + "/", shots: shots, label: label}

	// A first visit: a guest with a generated name.
	first := b.load("first visit", chromedp.Navigate(b.base))
	if first.Kind != "Guest" || !guestName.MatchString(first.Name) || first.ID == "" {
		t.Fatalf("first visit shows %+v, want a guest with a generated name", first)
	}
	b.check("the home page")
	b.screenshot("01-first-visit")

	// The first Tab shows the skip link; following it moves focus to the
	// main content.
	var skip []string
	b.step("tabbing to the skip link", func(ctx context.Context) error {
		if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
			return err
		}
		var err error
		skip, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
		  const a = document.activeElement, r = a.getBoundingClientRect();
		  const shown = r.width > 40 && r.height > 20 && r.top >= 0 ? "shown" : "hidden";
		  a.click();
		  return [a.className, a.textContent, shown, document.activeElement.id]; })()`))
		return err
	})
	if want := []string{"skip", "Skip to main content", "shown", "main"}; !slices.Equal(skip, want) {
		t.Fatalf("the first Tab and Enter give %q, want %q", skip, want)
	}

	// Adding to the cart, which each page confirms.
	b.click("add-tea")
	b.click("add-mug")
	withCart := b.click("add-tea")
	wantCart := map[string]int{"tea": 2, "mug": 1}
	if withCart.ID != first.ID || !maps.Equal(withCart.Cart, wantCart) {
		t.Fatalf("after adding, the page shows %+v, want guest %s with cart %v", withCart, first.ID, wantCart)
	}
	if !strings.Contains(withCart.Notice, "Added another Lapsang Tea to your cart: you have 2.") || !withCart.NoticeShown {
		t.Fatalf("after adding a second tea the notice is %q (on screen: %v)", withCart.Notice, withCart.NoticeShown)
	}
	if !guestStored(t, store, first.ID) {
		t.Fatal("the returning guest is not in the store")
	}
	b.check("the home page with a cart")
	b.screenshot("02-guest-cart")
	// The notice links to the cart, which is below the products on a phone.
	var cartInView bool
	b.step("following See your cart", func(ctx context.Context) error {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#notice a[href="#cart"]`))); err != nil {
			return err
		}
		var err error
		cartInView, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		  const r = document.querySelector("#cart-title").getBoundingClientRect();
		  return r.top >= 0 && r.bottom <= innerHeight; })()`))
		return err
	})
	if !cartInView {
		t.Fatal("See your cart does not bring the cart into view")
	}

	// A reload and a second tab of the same browser show the same guest and cart.
	if p := b.load("reload", chromedp.Reload()); !samePage(p, withCart) {
		t.Fatalf("after a reload the page shows %+v, want %+v", p, withCart)
	}
	b2 := b.newTab("")
	if p := b2.read(); !samePage(p, withCart) {
		t.Fatalf("a second tab shows %+v, want %+v", p, withCart)
	}
	b2.screenshot("03-second-tab")

	// A restart in the middle of the visit loses nothing: the guest's cart
	// is its data, in the store with it.
	if be.durable {
		restart()
		if p := b.load("reload after a restart", chromedp.Reload()); !samePage(p, withCart) {
			t.Fatalf("after the shop restarted the page shows %+v, want %+v", p, withCart)
		}
		if !guestStored(t, store, first.ID) {
			t.Fatal("the guest is not in the store after the restart")
		}
	}

	// The guest cookie is there, but scripts cannot read it.
	var docCookie string
	b.step("reading document.cookie", func(ctx context.Context) error {
		var err error
		docCookie, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
		return err
	})
	if strings.Contains(docCookie, guestCookie) {
		t.Fatalf("document.cookie exposes the guest cookie: %q", docCookie)
	}
	c := b.cookies()[guestCookie]
	if c == nil || !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax {
		t.Fatalf("guest cookie in the browser is %+v, want one, HttpOnly, Secure, SameSite=Lax", c)
	}

	// A wrong password says so, as an alert tied to the fields.
	if p := b.click("sign-in"); !p.Form || p.Path != "/login" {
		t.Fatalf("Sign in leads to %+v, want the sign-in form", p)
	}
	b.check("the login page")
	b.signIn("alice", "builder", http.StatusUnauthorized)
	var errorWiring []string
	b.step("reading the login error", func(ctx context.Context) error {
		var err error
		errorWiring, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`[
		  document.querySelector("#login-error")?.getAttribute("role"),
		  document.querySelector("#password")?.getAttribute("aria-invalid"),
		  document.querySelector("#password")?.getAttribute("aria-describedby"),
		  document.activeElement?.id]`))
		return err
	})
	if want := []string{"alert", "true", "login-error", "password"}; !slices.Equal(errorWiring, want) {
		t.Fatalf("the login error's role, the password's aria-invalid and aria-describedby, and the focus are %q, want %q", errorWiring, want)
	}
	b.check("the login page with an error")
	b.screenshot("04-login-error")

	// Logging in as alice merges the guest cart into her account's cart.
	account, err := shop.Cart(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := maps.Clone(account)
	overlap := false
	for id, n := range withCart.Cart {
		overlap = overlap || want[id] > 0
		want[id] += n
	}
	if !overlap {
		t.Fatalf("alice's cart %v shares no product with the guest's %v: the merge of quantities would go untested", account, withCart.Cart)
	}
	b.click("sign-in")
	in := b.signIn("alice", "wonderland", http.StatusOK)
	if in.Kind != "Signed in" || in.Name != "Alice" || in.ID != "alice" || !maps.Equal(in.Cart, want) {
		t.Fatalf("after login the page shows %+v, want Alice signed in with cart %v", in, want)
	}
	if !strings.Contains(in.Notice, first.Name) {
		t.Fatalf("the notice %q does not name the guest %q whose cart moved", in.Notice, first.Name)
	}
	b.check("the home page, signed in")
	b.screenshot("05-signed-in-merged")
	if got, err := shop.Cart(context.Background(), "alice"); err != nil || !maps.Equal(got, want) {
		t.Fatalf("alice's cart in the shop's store is %v (%v), want %v", got, err, want)
	}
	if guestStored(t, store, first.ID) {
		t.Fatal("the guest is still in the store after login")
	}
	if _, ok := b.cookies()[guestCookie]; ok {
		t.Fatal("the guest cookie is still in the browser after login")
	}

	// Back shows the login page as it is now: signed in, no form.
	if p := b.back(); p.Path != "/login" || p.Form || p.Kind != "Signed in" {
		t.Fatalf("Back after login shows %+v, want the login page without its form", p)
	}
	var signedIn string
	b.step("reading the signed-in login page", func(ctx context.Context) error {
		var err error
		signedIn, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#signed-in")?.textContent ?? ""`))
		return err
	})
	if !strings.Contains(signedIn, "You are signed in as Alice") {
		t.Fatalf("Back after login shows %q, want it to say who is signed in", signedIn)
	}
	b.check("the login page, signed in")
	b.screenshot("06-back-after-login")
	b.click("back-to-shop")

	// Logging out says so and makes the visitor a new guest.
	out := b.click("log-out")
	if out.Kind != "Guest" || out.ID == "" || out.ID == first.ID || len(out.Cart) != 0 {
		t.Fatalf("after logout the page shows %+v, want a new guest with an empty cart (old guest %s)", out, first.ID)
	}
	if !strings.Contains(out.Notice, "You have signed out of Alice's account") ||
		!strings.Contains(out.Notice, "You are a new guest now: "+out.Name) || !out.NoticeShown {
		t.Fatalf("after logout the notice is %q (on screen: %v)", out.Notice, out.NoticeShown)
	}
	b.screenshot("07-after-logout")

	// Forget me asks first, then deletes the guest and says so; the
	// visitor is a new guest.
	again := b.click("add-cactus")
	if again.ID != out.ID || !guestStored(t, store, out.ID) {
		t.Fatalf("guest %s (page %+v) is not stored after adding to its cart", out.ID, again)
	}
	if ask := b.click("forget-me"); ask.Path != "/forget" || ask.ID != out.ID || !guestStored(t, store, out.ID) {
		t.Fatalf("asking to confirm Forget me shows %+v, or changed guest %s", ask, out.ID)
	}
	b.check("the Forget me confirmation")
	b.screenshot("08-forget-me-confirmation")
	forgot := b.click("forget-confirm")
	if forgot.Kind != "Guest" || forgot.ID == "" || forgot.ID == out.ID || len(forgot.Cart) != 0 {
		t.Fatalf("after Forget me the page shows %+v, want a new guest with an empty cart (old guest %s)", forgot, out.ID)
	}
	if !strings.Contains(forgot.Notice, "You are a new guest now: "+forgot.Name) || !forgot.NoticeShown {
		t.Fatalf("after Forget me the notice is %q (on screen: %v), want one that introduces the new guest %s",
			forgot.Notice, forgot.NoticeShown, forgot.Name)
	}
	if guestStored(t, store, out.ID) {
		t.Fatal("the guest is still in the store after Forget me")
	}
	b.screenshot("09-after-forget-me")

	// Tabs left open from before a login: one on the home page, one on the
	// confirmation. Neither forgets anything, and both say why and show
	// who the visitor is now.
	staleHome, staleAsk := b.newTab(""), b.newTab("forget")
	b.click("sign-in")
	if p := b.signIn("bob", "builder", http.StatusOK); p.Name != "Bob" {
		t.Fatalf("after signing in as bob the page shows %+v", p)
	}
	p := staleHome.click("forget-me")
	if p.Kind != "Signed in" || p.Name != "Bob" || !strings.Contains(p.Notice, "You are signed in as Bob, so there is no guest to forget") || !p.NoticeShown {
		t.Fatalf("Forget me from a tab older than the login shows %+v", p)
	}
	staleHome.check("Forget me when signed in")
	staleHome.screenshot("10-stale-forget-me")
	p = staleAsk.click("forget-confirm")
	if p.Kind != "Signed in" || p.Name != "Bob" || !strings.Contains(p.Notice, "Nothing was forgotten: this browser is signed in as Bob now") || !p.NoticeShown {
		t.Fatalf("a confirmation older than the login, confirmed, shows %+v", p)
	}
	staleAsk.screenshot("11-stale-confirmation")

	// The statistics page counts the two guests who became accounts (Alice,
	// then Bob), from the shop's own metrics.
	if p := b.click("stats-link"); p.Path != "/stats" {
		t.Fatalf("the statistics link leads to %+v", p)
	}
	b.check("the statistics page")
	var linked string
	b.step("reading the statistics", func(ctx context.Context) error {
		var err error
		linked, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#stat-linked")?.textContent ?? ""`))
		return err
	})
	if linked != "2 (2 today)" {
		t.Fatalf("the statistics page says %q guests made an account, want 2 (2 today)", linked)
	}
	b.screenshot("12-statistics")
}
