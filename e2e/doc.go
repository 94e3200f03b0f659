// Package e2e drives the demo shop (examples/shop) in headless Chromium:
// guest, cart, second tab, HttpOnly cookie, a failed and a good login with
// the cart merged, Back after login, logout and "Forget me" with its
// confirmation and from stale tabs, on the in-memory stores and on Redis,
// where the shop also restarts in the middle of a guest's visit and the
// cart must survive it, each at 390×844, 700×900 and 1280×800. On the way it checks every kind
// of page: nothing wider than the window, no product card overlapping
// another or narrower than its content, and no serious or critical WCAG 2
// A or AA violation found by axe-core.
//
// It is a module of its own so that users of the anonymous package never
// download the browser driver. Run it with:
//
//	cd e2e && go test -race -count=1 ./...
//
// axe-core comes from npm, pinned by package-lock.json; the test runs
// `npm ci` here when node_modules/axe-core is missing.
//
// Environment: CHROME_PATH picks the browser (default: chromium on PATH);
// REDIS_URL the Redis (default redis://127.0.0.1:6379/0); E2E_SCREENSHOTS
// the screenshot folder (default: a new one under the temporary folder).
// Without a browser, npm or a Redis the tests skip, loudly; with CI set or
// ANON_REQUIRE_BROWSER=1, a missing browser or npm fails them, and with
// ANON_REQUIRE_REDIS=1, a missing Redis does.
package e2e
