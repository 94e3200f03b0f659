package bench_test

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/redistest"
	"github.com/guestpass/anonymous/redisstore"
)

// cart is the guest data of these benchmarks: a shop cart of cartLines
// lines, whose JSON is cartSize bytes. Package anonymous keeps it as JSON in
// the guest's record (UpdateJSON, JSONFrom); scs keeps the same value in its
// session, encoded with gob together with the rest of the session.
type cart struct {
	Lines    []cartLine `json:"lines"`
	Currency string     `json:"currency"`
}

type cartLine struct {
	SKU        string `json:"sku"`
	Qty        int    `json:"qty"`
	PriceCents int    `json:"priceCents"`
}

const (
	cartLines = 4
	cartSize  = 200
)

// skus are the articles a cart holds: "SK0000" to "SK0999", all six bytes,
// so that every cart has the same size.
var skus = func() []string {
	s := make([]string, 1000)
	for i := range s {
		s[i] = "SK" + strconv.Itoa(10000 + i)[1:]
	}
	return s
}()

func init() { gob.Register(cart{}) } // scs gob-encodes session values as interface{}

// newCart returns the cart every visitor starts with.
func newCart() cart {
	c := cart{Lines: make([]cartLine, cartLines), Currency: "EUR"}
	for i := range c.Lines {
		c.Lines[i] = cartLine{SKU: skus[i], Qty: 1, PriceCents: 1999}
	}
	return c
}

// add puts one item in the cart: the article after the last line's. It
// drops the oldest line, so that the cart keeps its cartLines lines and
// cartSize bytes from one request to the next, and changes on every one.
func (c *cart) add() {
	last, _ := strconv.Atoi(c.Lines[len(c.Lines)-1].SKU[2:])
	copy(c.Lines, c.Lines[1:])
	c.Lines[len(c.Lines)-1] = cartLine{SKU: skus[(last+1)%len(skus)], Qty: 1, PriceCents: 1999}
}

// dataContender is one way of keeping a visitor's cart on the server. build
// returns, on one shared state: fresh, which gives a cookie-less visitor an
// id and the starting cart; read, which reads the cart of a returning
// visitor; and update, which adds one item to it. All three report the
// visitor's id, read and update only when they saw a whole cart.
type dataContender struct {
	name  string
	build func(tb testing.TB) (fresh, read, update http.Handler)
}

var dataContenders = []dataContender{
	{"anonymous-memstore", anonymousData(func(tb testing.TB) anonymous.Store { return newMemstore(tb) }, false)},
	{"anonymous-memstore-jsonfrom", anonymousData(func(tb testing.TB) anonymous.Store { return newMemstore(tb) }, true)},
	{"anonymous-redisstore", anonymousData(newRedisstore, false)},
	{"anonymous-redisstore-jsonfrom", anonymousData(newRedisstore, true)},
	{"scs-memstore", scsData(func(testing.TB) scs.Store { return scsmem.NewWithCleanupInterval(0) })},
	{"scs-goredisstore", scsData(func(tb testing.TB) scs.Store {
		c := redistest.Client(tb)
		return goredisstore.NewWithPrefix(c, redistest.Prefix(tb, c))
	})},
}

func newRedisstore(tb testing.TB) anonymous.Store {
	c := redistest.Client(tb)
	s, err := redisstore.New(c, redisstore.Options{Prefix: redistest.Prefix(tb, c)})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// anonymousData builds package anonymous's handlers, with the default
// budget (neither reading nor updating a stored guest consults it) and
// under PersistOnIssue, so that fresh stores the guest at once (the
// default, PersistOnReturn, would store it on its first UpdateData). The
// reading handler gets the data from DataFrom, as raw JSON, or with
// jsonFrom decodes it with JSONFrom. The middleware read the data with the
// guest, in the same store round trip, before either runs.
func anonymousData(open func(testing.TB) anonymous.Store, jsonFrom bool) func(testing.TB) (http.Handler, http.Handler, http.Handler) {
	return func(tb testing.TB) (http.Handler, http.Handler, http.Handler) {
		m, err := anonymous.New(open(tb), anonymous.Options{
			Keys: []anonymous.Key{{Hash: hashKey}}, PersistOnIssue: true, Lifetime: lifetime, ErrorLog: quiet,
		})
		if err != nil {
			tb.Fatal(err)
		}
		fresh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := anonymous.UpdateJSON(m, w, r, func(c *cart) error { *c = newCart(); return nil }); err == nil {
				report(r, anonymous.UserFrom(r.Context()).ID)
			}
		})
		read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if jsonFrom {
				if c, err := anonymous.JSONFrom[cart](r.Context()); err == nil && len(c.Lines) == cartLines {
					report(r, anonymous.UserFrom(r.Context()).ID)
					if p := cartSink(r); p != nil {
						*p = c
					}
				}
			} else if data := anonymous.DataFrom(r.Context()); len(data) == cartSize {
				report(r, anonymous.UserFrom(r.Context()).ID)
				if p := cartSink(r); p != nil {
					json.Unmarshal(data, p)
				}
			}
		})
		update := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := anonymous.UpdateJSON(m, w, r, func(c *cart) error {
				if len(c.Lines) != cartLines {
					return errBadCart
				}
				c.add()
				return nil
			})
			if err == nil && len(c.Lines) == cartLines {
				report(r, anonymous.UserFrom(r.Context()).ID)
			}
		})
		return m.Middleware(fresh), m.Middleware(read), m.Middleware(update)
	}
}

var errBadCart = errors.New("the guest's data is not a cart of " + strconv.Itoa(cartLines) + " lines")

// cartSinkKey is the context key of a *cart into which the reading handlers
// copy the cart they saw, for the tests; benchmarks set none.
type cartSinkKey struct{}

func withCartSink(r *http.Request, c *cart) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), cartSinkKey{}, c))
}

// cartSink returns the request's cart sink, nil when it has none.
func cartSink(r *http.Request) *cart {
	p, _ := r.Context().Value(cartSinkKey{}).(*cart)
	return p
}

// scsData builds scs's handlers: LoadAndSave loads the session (one store
// read, gob-decoding every value) and, when the handler changed it, commits
// it (gob-encoding the whole session, one store write) and sets its
// cookie. The cart is a cart value in the session, beside the id.
func scsData(open func(testing.TB) scs.Store) func(testing.TB) (http.Handler, http.Handler, http.Handler) {
	return func(tb testing.TB) (http.Handler, http.Handler, http.Handler) {
		sm := scs.New()
		sm.Store = open(tb)
		sm.Lifetime = lifetime
		sm.Cookie.Secure = true
		sm.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "session error", http.StatusInternalServerError)
		}
		fresh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := newID()
			sm.Put(r.Context(), "id", id)
			sm.Put(r.Context(), "cart", newCart())
			report(r, id)
		})
		read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, ok := sm.Get(r.Context(), "cart").(cart); ok && len(c.Lines) == cartLines {
				report(r, sm.GetString(r.Context(), "id"))
				if p := cartSink(r); p != nil {
					*p = c
				}
			}
		})
		update := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, ok := sm.Get(r.Context(), "cart").(cart)
			if !ok || len(c.Lines) != cartLines {
				return
			}
			c.add()
			sm.Put(r.Context(), "cart", c)
			report(r, sm.GetString(r.Context(), "id"))
		})
		return sm.LoadAndSave(fresh), sm.LoadAndSave(read), sm.LoadAndSave(update)
	}
}

// visitorWithCart gives a new visitor its id and cart with fresh, and
// returns the Cookie header it sends back and its id.
func visitorWithCart(tb testing.TB, fresh, read http.Handler) (ck, id string) {
	tb.Helper()
	w := &headerWriter{h: http.Header{}}
	fresh.ServeHTTP(w, request("", &id))
	ck = cookieHeader(w.h)
	if id == "" || ck == "" {
		tb.Fatalf("new visitor with a cart: id %q, cookie %q; want both", id, ck)
	}
	var got string
	w = &headerWriter{h: http.Header{}}
	read.ServeHTTP(w, request(ck, &got))
	if got != id || w.h["Set-Cookie"] != nil {
		tb.Fatalf("returning visitor with a cart: id %q, Set-Cookie %q; want %q and none", got, w.h["Set-Cookie"], id)
	}
	return ck, id
}

// BenchmarkReturningWithData: a returning visitor whose session holds a
// cart (cartSize bytes of JSON); the handler reads the cart. Compare with
// BenchmarkReturning, the same visitor without data.
func BenchmarkReturningWithData(b *testing.B) {
	for _, c := range dataContenders {
		b.Run(c.name, func(b *testing.B) {
			fresh, read, _ := c.build(b)
			ck, _ := visitorWithCart(b, fresh, read)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var id string
				r := request(ck, &id)
				w := &headerWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					id = ""
					read.ServeHTTP(w, r)
					if id == "" || w.h["Set-Cookie"] != nil {
						b.Errorf("returning visitor with a cart: id %q, Set-Cookie %q", id, w.h["Set-Cookie"])
						return
					}
				}
			})
		})
	}
}

// BenchmarkUpdateCart: a returning visitor adds one item to its cart: the
// whole request, with the session's load and the write of the new cart.
// Each of the RunParallel goroutines has a visitor of its own, so that
// package anonymous's writes never conflict (a conflict would cost it a
// read and a write more).
func BenchmarkUpdateCart(b *testing.B) {
	for _, c := range dataContenders {
		if c.name == "anonymous-memstore-jsonfrom" || c.name == "anonymous-redisstore-jsonfrom" {
			continue // the same update: UpdateJSON decodes the cart either way
		}
		b.Run(c.name, func(b *testing.B) {
			fresh, read, update := c.build(b)
			cookies := make([]string, runtime.GOMAXPROCS(0))
			for i := range cookies {
				cookies[i], _ = visitorWithCart(b, fresh, read)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var id string
				r := request(cookies[int(next.Add(1)-1)%len(cookies)], &id)
				w := &headerWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					id = ""
					update.ServeHTTP(w, r)
					if id == "" {
						b.Errorf("cart update: no id; Set-Cookie %q", w.h["Set-Cookie"])
						return
					}
				}
			})
		})
	}
}

// TestCart checks the cart's shape: cartSize bytes of JSON before and after
// an update, which changes it.
func TestCart(t *testing.T) {
	c := newCart()
	before, _ := json.Marshal(c)
	c.add()
	after, _ := json.Marshal(c)
	if len(before) != cartSize || len(after) != cartSize || string(before) == string(after) {
		t.Fatalf("cart JSON %d bytes, after an update %d bytes (changed: %v); want %d, %d, true\n%s\n%s",
			len(before), len(after), string(before) != string(after), cartSize, cartSize, before, after)
	}
	if got := c.Lines[cartLines-1].SKU; got != skus[cartLines] {
		t.Fatalf("the added item is %q, want %q", got, skus[cartLines])
	}
}

// TestDataContenders runs each contender's handlers once and checks that an
// update reaches the store: a later read sees the added item.
func TestDataContenders(t *testing.T) {
	for _, c := range dataContenders {
		t.Run(c.name, func(t *testing.T) {
			fresh, read, update := c.build(t)
			ck, id := visitorWithCart(t, fresh, read)
			for i := range 3 {
				var got string
				w := &headerWriter{h: http.Header{}}
				update.ServeHTTP(w, request(ck, &got))
				if got != id {
					t.Fatalf("update %d: id %q, want %q", i+1, got, id)
				}
				if next := cookieHeader(w.h); next != "" {
					ck = next // scs re-sets its cookie on every write
				}
			}
			// The read sees the three added items, SK0004 to SK0006, at the end.
			var got string
			var seen cart
			read.ServeHTTP(&headerWriter{h: http.Header{}}, withCartSink(request(ck, &got), &seen))
			if want := skus[cartLines+2]; got != id || len(seen.Lines) != cartLines || seen.Lines[cartLines-1].SKU != want {
				t.Fatalf("after 3 updates: id %q, cart %+v; want %q and a cart of %d lines ending with %s", got, seen, id, cartLines, want)
			}
		})
	}
}
