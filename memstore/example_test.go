package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// The Manager is the store's usual caller; this shows the Store contract it
// relies on: opaque bytes under a key, written over only the version read.
func Example() {
	ctx := context.Background()
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	const key = "01JDQ5Z8M3X9Y7K2V4N6P8R0ST"
	err = store.Create(ctx, key, anonymous.Entry{Value: []byte("a guest"), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		log.Fatal(err)
	}
	e, _ := store.Get(ctx, key)
	fmt.Printf("%s, version %d\n", e.Value, e.Version)
	fmt.Println(errors.Is(store.Create(ctx, key, e), anonymous.ErrExists))

	// An update writes only over the version it read.
	e.Value = []byte("a guest with a cart")
	fmt.Println(store.Update(ctx, key, e))
	fmt.Println(errors.Is(store.Update(ctx, key, e), anonymous.ErrConflict))
	e, _ = store.Get(ctx, key)
	fmt.Printf("%s, version %d\n", e.Value, e.Version)
	// Output:
	// a guest, version 1
	// true
	// <nil>
	// true
	// a guest with a cart, version 2
}

func ExampleNew_options() {
	// Free expired guests' memory every ten seconds instead of every minute,
	// and hold at most 16 MiB of guests (some 55,000 without data).
	store, err := memstore.New(memstore.Options{SweepInterval: 10 * time.Second, MaxBytes: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	fmt.Println(store.Len())
	// Output: 0
}
