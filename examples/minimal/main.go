// Command minimal is the smallest complete use of the package: every visitor
// gets a guest with a cart in its guest data, and logging in moves the cart
// into the account. Copy it, replacing the demo login and the accounts' carts
// with your own. go run ./examples/minimal; open http://127.0.0.1:8081.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"log"
	"net/http"
	"sync"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

type cart map[string]int // what a guest keeps in its data: item → quantity

var (
	mu       sync.Mutex
	accounts = map[string]cart{} // the application's own table of carts
	merged   = map[string]bool{} // the guests whose carts were taken in
)

// moveCart joins the guest's cart to the account's at login, once: a link
// may run again (see Options.OnLinkAccount), so guests are remembered.
func moveCart(_ context.Context, ev anonymous.LinkEvent) error {
	var guestCart cart // empty when the guest never added anything
	if err := json.Unmarshal(ev.Data, &guestCart); err != nil && len(ev.Data) > 0 {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if merged[ev.AnonymousUser.User.ID] {
		return nil
	}
	if accounts[ev.NewUser.User.ID] == nil {
		accounts[ev.NewUser.User.ID] = cart{}
	}
	for item, n := range guestCart {
		accounts[ev.NewUser.User.ID][item] += n
	}
	merged[ev.AnonymousUser.User.ID] = true
	return nil
}

func main() {
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	guests, err := anonymous.New(store, anonymous.Options{
		Keys:           []anonymous.Key{{Hash: []byte("use-32-random-bytes-from-secrets")}}, // in production: from a secret store
		CookieInsecure: true, CookieName: "guest",                                           // plain http on localhost
		OnLinkAccount: moveCart,
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		name := "visitor" // UserFrom is nil only while the store is down
		if u := anonymous.UserFrom(r.Context()); u != nil {
			name = u.Name
		}
		c, _ := anonymous.JSONFrom[cart](r.Context())
		fmt.Fprintf(w, `<p>Hello %s. Your cart: %v</p>
<form method=post action=/add><button name=item value=book>Add a book</button></form>
<form method=post action=/login><button>Log in as alice</button></form>`, html.EscapeString(name), c)
	})
	mux.HandleFunc("POST /add", func(w http.ResponseWriter, r *http.Request) {
		_, err := anonymous.UpdateJSON(guests, w, r, func(c *cart) error {
			if *c == nil {
				*c = cart{}
			}
			(*c)[r.FormValue("item")]++
			return nil
		})
		if err != nil {
			http.Error(w, "your cart could not be changed: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		// ... check a password and start your own session here ...
		if err := guests.Link(w, r, &anonymous.User{ID: "alice"}); err != nil {
			log.Println("link:", err) // log in anyway: the cart is kept, and a later Link moves it
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "Welcome, alice. Your cart: %v", accounts["alice"])
	})
	log.Println("listening on http://127.0.0.1:8081")
	log.Fatal(http.ListenAndServe("127.0.0.1:8081", guests.Middleware(mux)))
}
