package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/memstore"
)

// The Manager is the store's usual caller; this shows the Store methods it
// relies on.
func Example() {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()

	now := time.Now()
	rec := &anonymous.Record{
		User:    anonymous.User{ID: "01JDQ5Z8M3X9Y7K2V4N6P8R0ST", Name: "Anonymous", IsAnonymous: true},
		Session: anonymous.Session{UserID: "01JDQ5Z8M3X9Y7K2V4N6P8R0ST", ExpiresAt: now.Add(time.Hour)},
	}
	if err := store.Create(ctx, rec); err != nil {
		panic(err)
	}
	got, _ := store.Get(ctx, rec.User.ID)
	fmt.Println(got.User.Name, got.Version)
	fmt.Println(errors.Is(store.Create(ctx, rec), anonymous.ErrExists))

	// An update writes only over the version it read.
	got.Data = []byte(`{"tea":1}`)
	fmt.Println(store.Update(ctx, got))
	fmt.Println(errors.Is(store.Update(ctx, got), anonymous.ErrConflict))
	// Output:
	// Anonymous 1
	// true
	// <nil>
	// true
}

func ExampleNew_options() {
	// Free expired guests' memory every ten seconds instead of every minute,
	// and hold at most 50,000 guests.
	store := memstore.New(memstore.Options{SweepInterval: 10 * time.Second, MaxGuests: 50_000})
	defer store.Close()
	fmt.Println(store.Len())
	// Output: 0
}
