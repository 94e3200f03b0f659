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
	fmt.Println(got.User.Name)
	fmt.Println(errors.Is(store.Create(ctx, rec), anonymous.ErrExists))

	// A link deletes the guest; its id stays taken until the guest's expiry.
	_ = store.Delete(ctx, rec.User.ID)
	_, err := store.Get(ctx, rec.User.ID)
	fmt.Println(errors.Is(err, anonymous.ErrNotFound))
	fmt.Println(errors.Is(store.Create(ctx, rec), anonymous.ErrExists))
	// Output:
	// Anonymous
	// true
	// true
	// true
}

func ExampleNew_options() {
	// Free expired guests' memory every ten seconds instead of every minute.
	store := memstore.New(memstore.Options{SweepInterval: 10 * time.Second})
	defer store.Close()
	fmt.Println(store.Len())
	// Output: 0
}
