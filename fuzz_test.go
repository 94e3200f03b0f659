package anonymous_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/guestpass/anonymous"
)

// FuzzCookie sends arbitrary guest cookie values through the middleware:
// every one gets a 200 and a guest (but a copy of a first-visit cookie whose
// guest was stored moments ago, which gets neither guest nor cookie), and
// none loses the stored guest.
func FuzzCookie(f *testing.F) {
	fx := newFixture(f, anonymous.Options{})
	w, _ := fx.send(f, "GET", "/")
	w, stored := fx.send(f, "GET", "/", withCookie(guestCookie(f, w)))
	short := guestCookie(f, w)
	w, _ = fx.send(f, "GET", "/")
	pending := guestCookie(f, w) // never sent back
	for _, seed := range []string{short.Value, pending.Value, short.Value[:40], "", "a|b|c", strings.Repeat("=", 100)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		w, _ := fx.send(t, "GET", "/", withHeader("Cookie", defaultCookie+"="+value))
		if w.Code != http.StatusOK {
			t.Fatalf("status %d for %q", w.Code, value)
		}
		if !strings.Contains(w.Body.String(), `"isAnonymous":true`) && (value != pending.Value || len(w.Header()["Set-Cookie"]) != 0) {
			t.Fatalf("no guest for %q: %s, Set-Cookie %q", value, w.Body, w.Header()["Set-Cookie"])
		}
		if _, s := fx.send(t, "GET", "/", withCookie(short)); s.ID != stored.ID {
			t.Fatalf("stored guest lost after %q", value)
		}
	})
}
