package app

import (
	"fmt"
	"net/http"
	"time"

	"github.com/guestpass/anonymous"
)

// A notice tells the visitor, at the top of the home page, what their last
// action did. The handlers answer forms with a redirect to the home page,
// so they leave what happened in a flash cookie: short-lived and signed,
// shown once and then cleared. It needs no script and no server state, and
// it survives the guest changing under it (Log out and Forget me end with
// a new guest).

// flashCookie is the shop's flash cookie.
const flashCookie = "shop_flash"

// flashLifetime bounds how long a flash waits for the page that shows it.
const flashLifetime = time.Minute

// notice is a message on the home page.
type notice struct {
	Text string
	// Warn marks what did not happen as asked; it is shown as an alert.
	Warn bool
	// Cart adds a link to the cart, which is below the products on a
	// narrow screen.
	Cart bool
}

// flash is what a handler leaves for the next page: what happened (one of
// the flash kinds) and to what (a product id or a name, as the kind says).
type flash struct {
	Kind string `json:"k"`
	Arg  string `json:"a,omitempty"`
}

// Flash kinds.
const (
	flashAdded          = "added"            // Arg: the product's id
	flashAtMost         = "at-most"          // nothing added, the line is full; Arg: the product's id
	flashSet            = "set"              // a quantity changed; Arg: the product's id
	flashRemoved        = "removed"          // Arg: the product's id
	flashCartFailed     = "cart-failed"      // the cart could not be changed: the store failed, or a login is moving it
	flashSignedOut      = "signed-out"       // Arg: the account's name
	flashNotSignedIn    = "not-signed-in"    // Log out from a page older than the logout
	flashForgotten      = "forgotten"        // Arg: the forgotten guest's name
	flashForgetSignedIn = "forget-signed-in" // Forget me from a page older than a login
	flashForgetGone     = "forget-gone"      // Forget me for a guest already gone
	flashForgetFailed   = "forget-failed"    // the store failed
)

func (s *Shop) setFlash(w http.ResponseWriter, kind, arg string) {
	v, err := s.flash.Encode(flashCookie, flash{Kind: kind, Arg: arg})
	if err != nil {
		s.log.Error("shop: encoding the flash cookie", "err", err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: v, Path: "/", MaxAge: int(flashLifetime / time.Second),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
}

// takeFlash returns the request's flash, if it has a valid one, and clears
// it so that it shows once.
func (s *Shop) takeFlash(w http.ResponseWriter, r *http.Request) (flash, bool) {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return flash{}, false
	}
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
	var f flash
	if err := s.flash.Decode(flashCookie, c.Value, &f); err != nil {
		return flash{}, false
	}
	return f, true
}

// cartNotice words a flash about one product of the cart.
func (f flash) cartNotice(lines []cartLine) (notice, bool) {
	p, ok := productByID(f.Arg)
	if !ok {
		return notice{}, false
	}
	qty := 0
	for _, l := range lines {
		if l.Product.ID == p.ID {
			qty = l.Qty
		}
	}
	switch {
	case f.Kind == flashAtMost:
		return notice{Warn: true, Cart: true, Text: fmt.Sprintf(
			"You already have %d × %s in your cart, the most one order can hold, so none was added.", maxQty, p.Name)}, true
	case f.Kind == flashRemoved || qty == 0:
		return notice{Cart: true, Text: fmt.Sprintf("Removed %s from your cart.", p.Name)}, true
	case f.Kind == flashAdded && qty == 1:
		return notice{Cart: true, Text: fmt.Sprintf("Added %s to your cart.", p.Name)}, true
	case f.Kind == flashAdded:
		return notice{Cart: true, Text: fmt.Sprintf("Added another %s to your cart: you have %d.", p.Name, qty)}, true
	default:
		return notice{Cart: true, Text: fmt.Sprintf("You now have %d × %s in your cart.", qty, p.Name)}, true
	}
}

// notice words the flash for the page about to show: u is the visitor now
// (nil when the guest store is down) and lines their cart.
func (f flash) notice(u *anonymous.User, lines []cartLine) (notice, bool) {
	guest := u != nil && u.IsAnonymous
	signedIn := u != nil && !u.IsAnonymous
	switch f.Kind {
	case flashAdded, flashAtMost, flashSet, flashRemoved:
		return f.cartNotice(lines)
	case flashCartFailed:
		return notice{Warn: true, Cart: true, Text: "Your cart was not changed just now. Please try again in a moment."}, true
	case flashSignedOut:
		text := fmt.Sprintf("You have signed out of %s's account; its cart is kept for your next sign-in.", f.Arg)
		if guest {
			text += fmt.Sprintf(" You are a new guest now: %s.", u.Name)
		}
		return notice{Text: text}, true
	case flashNotSignedIn:
		return notice{Text: "You were not signed in, so there was nothing to log out of."}, true
	case flashForgotten:
		text := fmt.Sprintf("We have forgotten you: the guest %s and its cart are deleted.", f.Arg)
		if guest {
			text += fmt.Sprintf(" You are a new guest now: %s.", u.Name)
		}
		return notice{Text: text}, true
	case flashForgetSignedIn:
		who := "an account"
		if signedIn {
			who = u.Name
		}
		return notice{Warn: true, Text: fmt.Sprintf("Nothing was forgotten: this browser is signed in as %s now, "+
			"perhaps from another tab, and Forget me only deletes guests. Your account and its cart are kept.", who)}, true
	case flashForgetGone:
		text := "Nothing was forgotten: the guest on that page was already gone, forgotten from another tab or expired."
		if guest {
			text += fmt.Sprintf(" You are guest %s now.", u.Name)
		}
		return notice{Warn: true, Text: text}, true
	case flashForgetFailed:
		return notice{Warn: true, Text: "We could not forget you just now, so nothing was deleted. Please try again in a moment."}, true
	}
	return notice{}, false
}
