// Command server is the Go side of the better-auth client compatibility
// check: the package's middleware and JSON endpoints on a memstore,
// listening on a free port of 127.0.0.1. It prints its base URL on the first
// line of standard output and serves until standard input closes, so the
// Node script that starts it never leaves it running.
//
// It keeps the package's defaults, the Secure cookie attribute included:
// browsers accept Secure cookies from http://127.0.0.1, and the Node script
// carries cookies by hand, as a browser would send them back.
package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

func main() {
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	key := make([]byte, 32)
	rand.Read(key)
	guests, err := anonymous.New(store, anonymous.Options{
		Keys: []anonymous.Key{{Hash: key}},
		// Whoever sends this header is a real user: enough to check the
		// endpoints' refusals without a login system.
		Identify: func(r *http.Request) (*anonymous.User, error) {
			if id := r.Header.Get("X-Compat-User"); id != "" {
				return &anonymous.User{ID: id, Email: id + "@example.com", Name: id}, nil
			}
			return nil, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if u := anonymous.UserFrom(r.Context()); u != nil {
			fmt.Fprintln(w, u.ID)
		}
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("http://%s\n", ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	// Serve returns once the listener closes; anything else is a failure.
	if err := http.Serve(ln, guests.Middleware(mux)); !errors.Is(err, net.ErrClosed) {
		log.Fatal(err)
	}
}
