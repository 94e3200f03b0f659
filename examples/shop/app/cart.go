package app

// The cart: reading it, changing it from a form, and moving a guest's
// into an account's at login.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/guestpass/anonymous"
)

// Cart returns owner's cart, product id → quantity: an account's from
// Carts, a guest's from its data in the guest store (empty once the guest
// is deleted, linked or gone).
func (s *Shop) Cart(ctx context.Context, owner string) (map[string]int, error) {
	if _, ok := demoAccounts[owner]; ok {
		c, err := s.carts.Get(ctx, owner)
		return orEmpty(c.Items), err
	}
	rec, err := s.guests.Record(ctx, owner)
	switch {
	case errors.Is(err, anonymous.ErrNotFound):
		return map[string]int{}, nil
	case err != nil:
		return nil, err
	}
	var d guestData
	if len(rec.Data) > 0 {
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return nil, fmt.Errorf("shop: the data of guest %s is not a cart: %w", owner, err)
		}
	}
	return orEmpty(d.Cart), nil
}

func orEmpty(c map[string]int) map[string]int {
	if c == nil {
		return map[string]int{}
	}
	return c
}

// moveCart is Options.OnLinkAccount: the guest's cart, handed over as the
// guest's data, joins the account's, with a notice for the account's next
// page, in one atomic update of the account's cart. The update records the
// guest's id, so should the package run the callback again for the same
// guest (see Options.OnLinkAccount), it adds nothing twice. An error keeps
// the guest, and its cart, for the package to retry.
func (s *Shop) moveCart(ctx context.Context, ev anonymous.LinkEvent) error {
	guest, owner := ev.AnonymousUser.User, ev.NewUser.User
	var d guestData
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			// Only the shop writes guests' data: a value that is no cart is a
			// bug, and retrying the link would not mend it.
			s.log.ErrorContext(ctx, "shop: the guest's data is not a cart; nothing moved", "guest", guest.ID, "account", owner.ID, "err", err)
			return nil
		}
	}
	moved, again := 0, false
	if len(d.Cart) > 0 {
		_, err := s.carts.Update(ctx, owner.ID, func(c *AccountCart) error {
			moved, again = 0, slices.Contains(c.Merged, guest.ID)
			if again {
				return ErrNoChange
			}
			if c.Items == nil {
				c.Items = make(map[string]int)
			}
			for id, n := range d.Cart {
				c.Items[id] = min(c.Items[id]+n, maxQty)
				moved += n
			}
			c.Merged = append(c.Merged, guest.ID)
			if len(c.Merged) > maxMerged {
				c.Merged = slices.Clone(c.Merged[len(c.Merged)-maxMerged:])
			}
			c.Notice = fmt.Sprintf("We moved %d %s from your guest cart (as %s) into your account.",
				moved, plural(moved, "item", "items"), guest.Name)
			return nil
		})
		if err != nil {
			return fmt.Errorf("shop: moving the cart of guest %s into %s: %w", guest.ID, owner.ID, err)
		}
	}
	if again {
		s.log.Info("shop: guest linked again; its cart was merged already", "guest", guest.ID, "account", owner.ID)
		return nil
	}
	s.log.Info("shop: guest linked to account", "guest", guest.ID, "account", owner.ID, "items", moved)
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// owner returns the request's user, or answers 503 and returns nil when
// there is none (the guest store is down: the package serves on without a
// guest rather than replace the visitor's cookie).
func (s *Shop) owner(w http.ResponseWriter, r *http.Request) *anonymous.User {
	u := anonymous.UserFrom(r.Context())
	if u == nil {
		http.Error(w, "The shop cannot see your cart right now. Please try again in a moment.", http.StatusServiceUnavailable)
	}
	return u
}

// form parses a small urlencoded body; anything else is the client's error.
func form(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Bad form.", http.StatusBadRequest)
		return false
	}
	return true
}

// changeCart applies change to the request's cart, the guest's data or
// the account's cart, atomically: change may run more than once, and
// returns false to leave the cart as it was (nothing is written then).
func (s *Shop) changeCart(w http.ResponseWriter, r *http.Request, u *anonymous.User, change func(c map[string]int) bool) error {
	if u.IsAnonymous {
		// A first-visit guest is stored now, with its cart, and its cookie
		// re-set: this runs before the response is written.
		_, err := anonymous.UpdateJSON(s.guests, w, r, func(d *guestData) error {
			if d.Cart == nil {
				d.Cart = make(map[string]int)
			}
			if !change(d.Cart) {
				return ErrNoChange
			}
			return nil
		})
		if errors.Is(err, ErrNoChange) {
			return nil
		}
		return err
	}
	_, err := s.carts.Update(r.Context(), u.ID, func(c *AccountCart) error {
		if c.Items == nil {
			c.Items = make(map[string]int)
		}
		if !change(c.Items) {
			return ErrNoChange
		}
		return nil
	})
	return err
}

// cartFailed leaves a notice of why the cart did not change, and logs what
// the visitor cannot mend.
func (s *Shop) cartFailed(w http.ResponseWriter, r *http.Request, u *anonymous.User, err error) {
	s.log.ErrorContext(r.Context(), "shop: changing the cart failed", "user", u.ID, "err", err)
	s.setFlash(w, flashCartFailed, "")
}

func seeOther(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// formProduct parses a cart form and returns the product it names, or
// answers 400 and returns false.
func formProduct(w http.ResponseWriter, r *http.Request) (product, bool) {
	if !form(w, r) {
		return product{}, false
	}
	p, ok := productByID(r.PostForm.Get("product"))
	if !ok {
		http.Error(w, "No such product.", http.StatusBadRequest)
	}
	return p, ok
}

func (s *Shop) cartAdd(w http.ResponseWriter, r *http.Request) {
	p, ok := formProduct(w, r)
	if !ok {
		return
	}
	u := s.owner(w, r)
	if u == nil {
		return
	}
	full := false
	err := s.changeCart(w, r, u, func(c map[string]int) bool {
		full = c[p.ID] >= maxQty
		if !full {
			c[p.ID]++
		}
		return !full
	})
	switch {
	case err != nil:
		s.cartFailed(w, r, u, err)
	case full:
		s.setFlash(w, flashAtMost, p.ID)
	default:
		s.setFlash(w, flashAdded, p.ID)
	}
	seeOther(w, r, "/")
}

// cartSet sets a line's quantity; 0 removes it.
func (s *Shop) cartSet(w http.ResponseWriter, r *http.Request) {
	p, ok := formProduct(w, r)
	if !ok {
		return
	}
	n, err := strconv.Atoi(r.PostForm.Get("qty"))
	if err != nil || n < 0 || n > maxQty {
		http.Error(w, fmt.Sprintf("Quantity must be a whole number from 0 to %d.", maxQty), http.StatusBadRequest)
		return
	}
	u := s.owner(w, r)
	if u == nil {
		return
	}
	err = s.changeCart(w, r, u, func(c map[string]int) bool {
		if n == 0 {
			_, had := c[p.ID]
			delete(c, p.ID)
			return had
		}
		had := c[p.ID]
		c[p.ID] = n
		return had != n
	})
	switch {
	case err != nil:
		s.cartFailed(w, r, u, err)
	case n == 0:
		s.setFlash(w, flashRemoved, p.ID)
	default:
		s.setFlash(w, flashSet, p.ID)
	}
	seeOther(w, r, "/")
}
