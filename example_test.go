package anonymous_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// Wrap a mux: every visitor is greeted by its guest's name.
func Example() {
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u := anonymous.UserFrom(r.Context())
		if u == nil { // the store is down (fail open): serve without a guest
			fmt.Fprintln(w, "Hello!")
			return
		}
		fmt.Fprintf(w, "Hello, %s! (guest: %v)\n", u.Name, u.IsAnonymous)
	})
	handler := guests.Middleware(mux)

	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	fmt.Print(w.Body)
	fmt.Println(strings.HasPrefix(w.Header().Get("Set-Cookie"), guests.CookieName()+"="))
	// Output:
	// Hello, Anonymous! (guest: true)
	// true
}

// The spec's options: a custom email domain and generated names.
func ExampleOptions() {
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	animals := []string{"Panda", "Fox", "Owl"}
	var n atomic.Int64 // GenerateName runs on concurrent requests
	guests, err := anonymous.New(store, anonymous.Options{
		Keys:            []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
		EmailDomainName: "example.com",
		GenerateName: func(context.Context) string {
			i := n.Add(1) // a real generator would pick at random
			return "Mystery " + animals[i%int64(len(animals))]
		},
		PersistOnIssue: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	handler := guests.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := anonymous.UserFrom(r.Context())
		fmt.Println(u.Name, strings.HasPrefix(u.Email, "temp-"), strings.HasSuffix(u.Email, "@example.com"))
	}))
	handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	// Output: Mystery Fox true true
}

// A login handler links the visitor's guest to the account it just
// authenticated; OnLinkAccount moves the guest's cart.
func ExampleManager_Link() {
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	cart := map[string][]string{} // the application's data, by user id
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
		OnLinkAccount: func(ctx context.Context, l anonymous.LinkEvent) error {
			from, to := l.AnonymousUser.User.ID, l.NewUser.User.ID
			cart[to] = append(cart[to], cart[from]...)
			delete(cart, from)
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		u := anonymous.UserFrom(r.Context())
		if u == nil { // the store failed: no guest on this request
			http.Error(w, "try again later", http.StatusServiceUnavailable)
			return
		}
		cart[u.ID] = append(cart[u.ID], r.FormValue("item"))
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		// ... check the password, start the application's own session ...
		if err := guests.Link(w, r, &anonymous.User{ID: "alice", Email: "alice@example.com"}); err != nil {
			http.Error(w, "could not move your cart, please retry", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "welcome back")
	})
	handler := guests.Middleware(mux)

	// A guest adds a book, comes back for a pen, then logs in.
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("POST", "/cart?item=book", nil))
	cookie := w.Result().Cookies()[0]
	for _, path := range []string{"/cart?item=pen", "/login"} {
		r := httptest.NewRequest("POST", path, nil)
		r.AddCookie(cookie)
		w = httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		if c := w.Result().Cookies(); len(c) > 0 {
			cookie = c[0]
		}
	}
	fmt.Println(cart["alice"], len(cart), cookie.MaxAge < 0)
	// Output: [book pen] 1 true
}

// With Identify, no login handler needs to call Link: the first request
// after any login (a form, an OAuth callback, a magic link) links the guest.
func ExampleOptions_identify() {
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
		Identify: func(r *http.Request) (*anonymous.User, error) {
			c, err := r.Cookie("app_session") // the application's own auth
			if err != nil {
				return nil, nil // not logged in
			}
			return &anonymous.User{ID: c.Value}, nil // verify it in a real app
		},
		OnLinkAccount: func(ctx context.Context, l anonymous.LinkEvent) error {
			fmt.Println("moving data to", l.NewUser.User.ID)
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	handler := guests.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := anonymous.UserFrom(r.Context())
		fmt.Println("handler sees", u.ID == "alice", u.IsAnonymous)
	}))

	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("GET", "/", nil)) // a guest
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(w.Result().Cookies()[0])
	r.AddCookie(&http.Cookie{Name: "app_session", Value: "alice"}) // logged in
	handler.ServeHTTP(httptest.NewRecorder(), r)
	// Output:
	// handler sees false true
	// moving data to alice
	// handler sees true false
}

// A guest's cart lives in the guest's own data: updated atomically, read
// with the guest, handed to OnLinkAccount at login, gone with the guest.
func ExampleUpdateJSON() {
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	type Cart map[string]int
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: []byte("load-a-32-byte-key-from-secrets!")}},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		cart, err := anonymous.UpdateJSON(guests, w, r, func(c *Cart) error {
			if *c == nil {
				*c = Cart{}
			}
			(*c)[r.FormValue("sku")]++
			return nil
		})
		if err != nil {
			http.Error(w, "could not update your cart", http.StatusServiceUnavailable)
			return
		}
		fmt.Println("cart:", cart)
	})
	handler := guests.Middleware(mux)

	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("POST", "/cart?sku=tea", nil))
	r := httptest.NewRequest("POST", "/cart?sku=mug", nil)
	r.AddCookie(w.Result().Cookies()[0])
	handler.ServeHTTP(httptest.NewRecorder(), r)
	// Output:
	// cart: map[tea:1]
	// cart: map[mug:1 tea:1]
}

// OnLinkAccount made safe to repeat, as every application's should be: the
// account remembers, by the guest's id, which guests' carts it took in, so
// the same link run a second time (after a store outage that outlasted
// LinkLease, or a store that lost its data) adds nothing. In a database,
// record the guest's id in the same transaction as the cart's rows (a
// unique key on it makes the repeat fail cleanly).
func ExampleOptions_onLinkAccount() {
	type account struct {
		cart   map[string]int
		merged map[string]bool // guests' ids
	}
	alice := &account{cart: map[string]int{"pen": 1}, merged: map[string]bool{}}
	accounts := map[string]*account{"alice": alice}
	onLink := func(ctx context.Context, ev anonymous.LinkEvent) error {
		a, guest := accounts[ev.NewUser.User.ID], ev.AnonymousUser.User.ID
		if a.merged[guest] {
			return nil // this guest's cart is in already
		}
		var cart map[string]int
		if len(ev.Data) > 0 {
			if err := json.Unmarshal(ev.Data, &cart); err != nil {
				return err
			}
		}
		for item, n := range cart {
			a.cart[item] += n
		}
		a.merged[guest] = true
		return nil
	}
	_ = anonymous.Options{OnLinkAccount: onLink} // as the Manager runs it

	ev := anonymous.LinkEvent{
		AnonymousUser: anonymous.Account{User: &anonymous.User{ID: "01KBHQ9W0VYXJ5R3C2D8E7F6G5", IsAnonymous: true}},
		NewUser:       anonymous.Account{User: &anonymous.User{ID: "alice"}},
		Data:          []byte(`{"book":2}`),
	}
	for range 2 { // the same link, run twice
		if err := onLink(context.Background(), ev); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(alice.cart)
	// Output: map[book:2 pen:1]
}
