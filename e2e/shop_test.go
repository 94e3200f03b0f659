package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/examples/shop/app"
	"github.com/guestpass/anonymous/memstore"
	"github.com/guestpass/anonymous/redisstore"
)

// guestCookie is the package's default guest cookie name, which the shop keeps.
const guestCookie = "anonymous_guest"

// The screenshots' size.
const viewportW, viewportH = 1000, 800

// flowTimeout bounds one whole browser flow; stepTimeout one step of it.
const (
	flowTimeout = 2 * time.Minute
	stepTimeout = 20 * time.Second
)

func TestShopInBrowser(t *testing.T) {
	browser := findBrowser(t)

	t.Run("memory", func(t *testing.T) {
		store := memstore.New()
		t.Cleanup(func() { store.Close() })
		runShopFlow(t, browser, store)
	})
	t.Run("redis", func(t *testing.T) {
		runShopFlow(t, browser, redisStore(t))
	})
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

// redisStore returns a redisstore on REDIS_URL (default
// redis://127.0.0.1:6379/0) under a random key prefix, whose keys are
// removed at the end. Without a reachable Redis the test skips, loudly,
// unless ANON_REQUIRE_REDIS=1, where it fails.
func redisStore(t *testing.T) anonymous.Store {
	t.Helper()
	u := os.Getenv("REDIS_URL")
	if u == "" {
		u = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		msg := fmt.Sprintf("NO REDIS at %s: %v", opts.Addr, err)
		if os.Getenv("ANON_REQUIRE_REDIS") == "1" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg + " (set REDIS_URL, or ANON_REQUIRE_REDIS=1 to fail instead)")
	}
	prefix := "e2e-" + rand.Text()[:12] + ":"
	t.Cleanup(func() { deleteKeys(t, client, prefix) })
	s, err := redisstore.New(client, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deleteKeys removes the test's own keys; the database is shared, so it is
// never flushed.
func deleteKeys(t *testing.T, client *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		client.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleaning Redis keys %s*: %v", prefix, err)
	}
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
	ID     string         `json:"id"`
	Name   string         `json:"name"`
	Kind   string         `json:"kind"`
	Cart   map[string]int `json:"cart"`
	Notice string         `json:"notice"`
}

const readPage = `(() => {
  const text = (sel) => (document.querySelector(sel)?.textContent ?? "").trim();
  const cart = {};
  for (const li of document.querySelectorAll("#cart li[data-product]")) cart[li.dataset.product] = Number(li.dataset.qty);
  return {id: text("#user-id"), name: text("#user-name"), kind: text("#user-kind"), cart,
          notice: text("#notice")};
})()`

var guestName = regexp.MustCompile(`^[A-Z][a-z]+ [A-Z][a-z]+$`)

// tab drives one browser tab against the shop.
type tab struct {
	t     *testing.T
	ctx   context.Context
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
	b.step(what, func(ctx context.Context) error {
		resp, err := chromedp.RunResponse(ctx, act)
		if err != nil {
			return err
		}
		if resp.Status != http.StatusOK {
			return fmt.Errorf("%s answered %d %s", resp.URL, resp.Status, resp.StatusText)
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
	_, err := store.Get(ctx, id)
	switch {
	case err == nil:
		return true
	case errors.Is(err, anonymous.ErrNotFound):
		return false
	default:
		t.Fatalf("store.Get(%s): %v", id, err)
		return false
	}
}

// runShopFlow serves the shop on store and walks one visitor through it in
// headless Chromium: guest, cart, reload, second tab, login with the cart
// merged, logout, and Forget me.
func runShopFlow(t *testing.T, browser string, store anonymous.Store) {
	shop, err := app.New(store, app.Config{
		HashKey: []byte("e2e-hash-key-of-exactly-32-bytes"),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Plain HTTP on 127.0.0.1, Secure cookies kept: browsers treat loopback
	// as a secure context, as the shop's README promises.
	srv := httptest.NewServer(shop)
	t.Cleanup(srv.Close)

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
		chromedp.WindowSize(viewportW, viewportH),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	// The first action starts the browser: give it the flow's deadline, not a step's.
	if err := chromedp.Do(tabCtx, chromedp.EmulateViewport(viewportW, viewportH)); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}

	shots := screenshotDir(t)
	t.Logf("screenshots of %s go to %s", t.Name(), shots)
	label := strings.ReplaceAll(t.Name(), "/", "-")
	b := &tab{t: t, ctx: tabCtx, base: srv.URL + "/", shots: shots, label: label}

	// A first visit: a guest with a generated name.
	first := b.load("first visit", chromedp.Navigate(b.base))
	if first.Kind != "Guest" || !guestName.MatchString(first.Name) || first.ID == "" {
		t.Fatalf("first visit shows %+v, want a guest with a generated name", first)
	}
	b.screenshot("01-first-visit")

	// Adding to the cart.
	b.click("add-tea")
	b.click("add-mug")
	withCart := b.click("add-tea")
	wantCart := map[string]int{"tea": 2, "mug": 1}
	if withCart.ID != first.ID || !maps.Equal(withCart.Cart, wantCart) {
		t.Fatalf("after adding, the page shows %+v, want guest %s with cart %v", withCart, first.ID, wantCart)
	}
	if !guestStored(t, store, first.ID) {
		t.Fatal("the returning guest is not in the store")
	}
	b.screenshot("02-guest-cart")

	// A reload and a second tab of the same browser show the same guest and cart.
	if p := b.load("reload", chromedp.Reload()); !samePage(p, withCart) {
		t.Fatalf("after a reload the page shows %+v, want %+v", p, withCart)
	}
	func() {
		ctx2, cancel2 := chromedp.NewContext(tabCtx) // a new target, same browser context
		defer cancel2()
		// Open the tab outside any step deadline: the first action's context owns it.
		if err := chromedp.Do(ctx2, chromedp.EmulateViewport(viewportW, viewportH)); err != nil {
			t.Fatalf("opening a second tab: %v", err)
		}
		b2 := &tab{t: t, ctx: ctx2, base: b.base, shots: shots, label: label}
		if p := b2.load("second tab", chromedp.Navigate(b.base)); !samePage(p, withCart) {
			t.Fatalf("a second tab shows %+v, want %+v", p, withCart)
		}
		b2.screenshot("03-second-tab")
	}()

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

	// Logging in as alice merges the guest cart into her account's cart.
	account := shop.Cart("alice")
	want := maps.Clone(account)
	overlap := false
	for id, n := range withCart.Cart {
		overlap = overlap || want[id] > 0
		want[id] += n
	}
	if !overlap {
		t.Fatalf("alice's cart %v shares no product with the guest's %v: the merge of quantities would go untested", account, withCart.Cart)
	}
	b.load("login page", chromedp.Navigate(b.base+"login"))
	b.step("filling the login form", func(ctx context.Context) error {
		return chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.ID("username"), "alice"),
			chromedp.SendKeys(chromedp.ID("password"), "wonderland"),
		)
	})
	in := b.click("sign-in-submit")
	if in.Kind != "Signed in" || in.Name != "Alice" || in.ID != "alice" || !maps.Equal(in.Cart, want) {
		t.Fatalf("after login the page shows %+v, want Alice signed in with cart %v", in, want)
	}
	if !strings.Contains(in.Notice, first.Name) {
		t.Fatalf("the notice %q does not name the guest %q whose cart moved", in.Notice, first.Name)
	}
	b.screenshot("04-signed-in-merged")
	if guestStored(t, store, first.ID) {
		t.Fatal("the guest is still in the store after login")
	}
	if _, ok := b.cookies()[guestCookie]; ok {
		t.Fatal("the guest cookie is still in the browser after login")
	}

	// Logging out makes the visitor a new guest.
	out := b.click("log-out")
	if out.Kind != "Guest" || out.ID == "" || out.ID == first.ID || len(out.Cart) != 0 {
		t.Fatalf("after logout the page shows %+v, want a new guest with an empty cart (old guest %s)", out, first.ID)
	}
	b.screenshot("05-after-logout")

	// Forget me asks first, then deletes the guest and says so; the
	// visitor is a new guest.
	again := b.click("add-cactus")
	if again.ID != out.ID || !guestStored(t, store, out.ID) {
		t.Fatalf("guest %s (page %+v) is not stored after adding to its cart", out.ID, again)
	}
	if ask := b.click("forget-me"); ask.ID != out.ID || !guestStored(t, store, out.ID) {
		t.Fatalf("asking to confirm Forget me changed guest %s (page %+v)", out.ID, ask)
	}
	forgot := b.click("forget-confirm")
	if forgot.Kind != "Guest" || forgot.ID == "" || forgot.ID == out.ID || len(forgot.Cart) != 0 {
		t.Fatalf("after Forget me the page shows %+v, want a new guest with an empty cart (old guest %s)", forgot, out.ID)
	}
	if !strings.Contains(forgot.Notice, "You are a new guest now: "+forgot.Name) {
		t.Fatalf("after Forget me the notice is %q, want one that introduces the new guest %s", forgot.Notice, forgot.Name)
	}
	if guestStored(t, store, out.ID) {
		t.Fatal("the guest is still in the store after Forget me")
	}
	b.screenshot("06-after-forget-me")
}
