// Package e2e drives the demo shop (examples/shop) in headless Chromium:
// guest, cart, second tab, HttpOnly cookie, login with the cart merged,
// logout and "Forget me", on the in-memory store and on Redis.
//
// It is a module of its own so that users of the anonymous package never
// download the browser driver. Run it with:
//
//	cd e2e && go test -race -count=1 ./...
//
// Environment: CHROME_PATH picks the browser (default: chromium on PATH);
// REDIS_URL the Redis (default redis://127.0.0.1:6379/0); E2E_SCREENSHOTS
// the screenshot folder (default: a new one under the temporary folder).
// Without a browser or a Redis the tests skip, loudly; with CI set or
// ANON_REQUIRE_BROWSER=1, a missing browser fails them, and with
// ANON_REQUIRE_REDIS=1, a missing Redis does.
package e2e
