package redisstore_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/internal/storegate"
	"github.com/guestpass/anonymous/redisstore"
)

// grace is the time after a first-visit guest's store during which its
// first-visit cookie still opens it: 10 s, and a margin for the round trips
// that a test cannot time exactly.
const grace = 10*time.Second + 300*time.Millisecond

// shop serves m's guests: a POST adds one to the guest's count, and every
// answer is "<id> <token> <count>", or "none" without a guest.
func shop(m *anonymous.Manager) http.Handler {
	return m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := anonymous.JSONFrom[int](r.Context())
		if err == nil && r.Method == http.MethodPost {
			n, err = anonymous.UpdateJSON(m, w, r, func(n *int) error { *n++; return nil })
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		u, s := anonymous.UserFrom(r.Context()), anonymous.SessionFrom(r.Context())
		if u == nil || s == nil {
			io.WriteString(w, "none")
			return
		}
		fmt.Fprintf(w, "%s %s %d", u.ID, s.Token, n)
	}))
}

// shopAnswer is one answer of shop: the guest, and the cookie it set.
type shopAnswer struct {
	id, token string
	count     int
	cookie    *http.Cookie
}

// shopVisit sends method to h from the client at 192.0.2.1 with cookie c,
// if any.
func shopVisit(t testing.TB, h http.Handler, method string, c *http.Cookie) shopAnswer {
	t.Helper()
	r := httptest.NewRequest(method, "https://shop.example/", nil)
	if c != nil {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("%s: %d %s", method, w.Code, w.Body)
	}
	var a shopAnswer
	fmt.Sscanf(w.Body.String(), "%s %s %d", &a.id, &a.token, &a.count)
	if cs := w.Result().Cookies(); len(cs) > 0 {
		a.cookie = cs[0]
	}
	return a
}

// redisStore is a redisstore on the single node, under a fresh prefix.
func redisStore(t testing.TB) *redisstore.Store {
	c := redistest.Client(t)
	s, err := redisstore.New(c, redisstore.Options{Prefix: redistest.Prefix(t, c)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A page's 8 requests that the client's budget, one guest from its end,
// refuses all but one of are served the guest that one stores, each handed
// its cookie, which opens the guest after the grace. The store holds the
// charged request's Create back until the others have been refused.
func TestSiblingsRefusedByTheBudgetOnRedis(t *testing.T) {
	t.Parallel() // it waits out the grace
	const n = 8
	gate := storegate.New(redisStore(t), n)
	m := manager(t, gate, anonymous.Options{Budget: anonymous.Budget{Levels: perClient(1, time.Hour, 1)}})
	h := shop(m)
	first := shopVisit(t, h, "GET", nil)
	answers := make([]shopAnswer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			method := "GET"
			if i < n/2 {
				method = "POST"
			}
			<-start
			answers[i] = shopVisit(t, h, method, first.cookie)
		})
	}
	close(start)
	wg.Wait()
	token := answers[0].token
	for i, a := range answers {
		if a.id != first.id || a.token != token || a.token == first.token || a.cookie == nil {
			t.Fatalf("sibling %d: guest %s, token %s, cookie %v; want guest %s with one new token and its cookie",
				i, a.id, a.token, a.cookie, first.id)
		}
	}
	time.Sleep(grace)
	for i, a := range answers {
		if later := shopVisit(t, h, "GET", a.cookie); later.id != first.id || later.count != n/2 {
			t.Fatalf("after the grace, sibling %d's cookie opens guest %q with a count of %d, want %s with %d",
				i, later.id, later.count, first.id, n/2)
		}
	}
}
