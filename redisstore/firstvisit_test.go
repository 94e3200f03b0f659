package redisstore_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
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
	return storeOn(t, redistest.Client(t))
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

// On Redis, in real time, a first-visit guest's grace is 10 s from its
// store. Within it, a copy of the first-visit cookie is a sibling: the
// guest, its data and the stored guest's token and cookie; after it, the
// copy (one planted in another browser) gets a guest of its own. So does a
// browser whose first visit updated its guest after the response had
// started, and which kept the first-visit cookie: its next request finds
// the guest and its data within the grace, and loses them after. The cases
// share one wait.
func TestTheGraceOnRedis(t *testing.T) {
	t.Parallel() // it waits out the grace
	m := manager(t, redisStore(t), anonymous.Options{})
	h := shop(m)
	var errs [2]error
	var ids [2]string
	late := func(i int) http.Handler {
		return m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK) // the header is gone
			_, errs[i] = anonymous.UpdateJSON(m, w, r, func(n *int) error { *n = 5; return nil })
			ids[i] = anonymous.UserFrom(r.Context()).ID
		}))
	}
	t0 := time.Now() // no guest below is stored before
	copied := shopVisit(t, h, "GET", nil)
	stored := shopVisit(t, h, "POST", copied.cookie)
	within, after := shopVisit(t, late(0), "GET", nil), shopVisit(t, late(1), "GET", nil)
	t1 := time.Now() // every guest above is stored by now
	if stored.id != copied.id || stored.token == copied.token || stored.count != 1 || stored.cookie == nil {
		t.Fatalf("the first return answered %+v, want guest %s stored under a new token", stored, copied.id)
	}
	for i, c := range []*http.Cookie{within.cookie, after.cookie} {
		if errs[i] != nil || c == nil || c.MaxAge != 3600 {
			t.Fatalf("UpdateJSON after the header was written: %v; the cookie %v, want the first-visit one", errs[i], c)
		}
	}

	time.Sleep(time.Until(t0.Add(9 * time.Second)))
	if a := shopVisit(t, h, "GET", copied.cookie); a.id != copied.id || a.token != stored.token || a.count != 1 || a.cookie == nil {
		t.Errorf("a copy within the grace was served %+v, want guest %s with token %s, its count of 1 and its cookie", a, copied.id, stored.token)
	}
	if a := shopVisit(t, h, "GET", within.cookie); a.id != ids[0] || a.count != 5 || a.cookie == nil || a.cookie.MaxAge == 3600 {
		t.Errorf("within the grace, the browser that kept its first-visit cookie was served %+v, want guest %s with its count of 5 and the stored guest's cookie", a, ids[0])
	}

	time.Sleep(time.Until(t1.Add(grace)))
	if a := shopVisit(t, h, "GET", copied.cookie); a.id == "none" || a.id == copied.id || a.count != 0 {
		t.Errorf("a copy after the grace was served %+v, want a guest of its own (not %s)", a, copied.id)
	}
	if a := shopVisit(t, h, "GET", after.cookie); a.id == "none" || a.id == ids[1] || a.count != 0 {
		t.Errorf("after the grace, the browser that kept its first-visit cookie was served %+v, want a new guest (not %s)", a, ids[1])
	}
}

// Keys rotate during the grace, on instances that share Redis: a sibling
// served by an instance that has put a new key first still derives the
// token the old key stored, and an instance that knows the new key, not yet
// first (the usual first step of a rotation), finds a guest the rotated
// instance stored.
func TestSiblingAcrossKeyRotationOnRedis(t *testing.T) {
	s := redisStore(t)
	k1, k2 := testKeys[0], anonymous.Key{Hash: []byte("fedcba9876543210fedcba9876543210")}
	old := shop(manager(t, s, anonymous.Options{Keys: []anonymous.Key{k1}}))
	rotated := shop(manager(t, s, anonymous.Options{Keys: []anonymous.Key{k2, k1}}))
	prepared := manager(t, s, anonymous.Options{Keys: []anonymous.Key{k1, k2}})

	first := shopVisit(t, old, "GET", nil)
	a := shopVisit(t, old, "POST", first.cookie)
	b := shopVisit(t, rotated, "GET", first.cookie)
	if a.id != first.id || a.token == first.token || b.id != a.id || b.token != a.token || b.count != 1 || b.cookie == nil {
		t.Fatalf("the old instance stored %+v; the rotated one served %+v, want the same guest, token and count", a, b)
	}

	first = shopVisit(t, old, "GET", nil)
	a = shopVisit(t, rotated, "GET", first.cookie)
	b = shopVisit(t, shop(prepared), "GET", first.cookie)
	if a.id != first.id || a.token == first.token || b.id != a.id || b.token != a.token || b.cookie == nil {
		t.Fatalf("the rotated instance stored %+v; the prepared one served %+v, want the same guest and token", a, b)
	}
	if rec, err := prepared.Record(t.Context(), first.id); err != nil || rec.Version != 1 {
		t.Errorf("stored record %+v, %v; want one, written once", rec, err)
	}
}

// TestSiblingsThroughTwoProxiesOnRedis: behind two proxies, with a
// Budget.Client that reads the address they set, one visitor's page loads
// through both proxies at once are siblings and share the guest stored in
// Redis; a copy of the cookie from another client gets a guest of its own.
func TestSiblingsThroughTwoProxiesOnRedis(t *testing.T) {
	m := manager(t, redisStore(t), anonymous.Options{Budget: anonymous.Budget{Client: func(r *http.Request) netip.Addr {
		return anonymous.ClientAddr(r.Header.Get("X-Real-IP")) // set by the proxies
	}}})
	h := shop(m)
	via := func(method, proxy, client string, c *http.Cookie) shopAnswer {
		t.Helper()
		r := httptest.NewRequest(method, "https://shop.example/", nil)
		r.RemoteAddr = proxy
		r.Header.Set("X-Real-IP", client)
		if c != nil {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("%s through %s: %d %s", method, proxy, w.Code, w.Body)
		}
		var a shopAnswer
		fmt.Sscanf(w.Body.String(), "%s %s %d", &a.id, &a.token, &a.count)
		if cs := w.Result().Cookies(); len(cs) > 0 {
			a.cookie = cs[0]
		}
		return a
	}
	const visitor = "203.0.113.7"
	first := via("GET", "10.0.0.1:5000", visitor, nil)
	answers := make([]shopAnswer, 8)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() { answers[i] = via("POST", fmt.Sprintf("10.0.0.%d:50%02d", 1+i%2, i), visitor, first.cookie) })
	}
	wg.Wait()
	for i, a := range answers {
		if a.id != first.id || a.cookie == nil || a.cookie.Value != answers[0].cookie.Value {
			t.Fatalf("request %d through proxy %d: guest %q, cookie %v; want guest %q and the page's one cookie", i, 1+i%2, a.id, a.cookie, first.id)
		}
	}
	if last := via("GET", "10.0.0.2:6000", visitor, answers[0].cookie); last.id != first.id || last.count != len(answers) {
		t.Errorf("after the page, the guest is %q with %d adds; want %q with %d", last.id, last.count, first.id, len(answers))
	}
	if other := via("GET", "10.0.0.2:6001", "198.51.100.9", first.cookie); other.id == "" || other.id == first.id {
		t.Errorf("a copy of the cookie from another client was served guest %q, want one of its own (first %q)", other.id, first.id)
	}
}
