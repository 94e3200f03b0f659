package anonymous_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/guestpass/anonymous"
)

// FuzzCookie sends arbitrary guest cookie values through the middleware:
// every one gets a 200 and a guest, and none loses the stored guest.
func FuzzCookie(f *testing.F) {
	fx := newFixture(f, anonymous.Options{})
	w, _ := fx.do(f)
	pending := guestCookie(f, w)
	w, stored := fx.do(f, pending)
	short := guestCookie(f, w)
	for _, seed := range []string{short.Value, pending.Value, short.Value[:40], "", "a|b|c", strings.Repeat("=", 100)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		r := httptest.NewRequest("GET", "https://shop.example/", nil)
		r.Header.Set("Cookie", "anonymous_guest="+value)
		w := httptest.NewRecorder()
		fx.h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("status %d for %q", w.Code, value)
		}
		if !strings.Contains(w.Body.String(), `"isAnonymous":true`) {
			t.Fatalf("no guest for %q: %s", value, w.Body)
		}
		if _, s := fx.do(t, short); s.ID != stored.ID {
			t.Fatalf("stored guest lost after %q", value)
		}
	})
}
