package app

import (
	"context"
	"fmt"
	"html/template"
	"math/rand/v2"
)

// product is an item the shop sells.
type product struct {
	ID    string
	Name  string
	Blurb string
	// Price is in cents.
	Price int
	// Color is the tile's background; Icon is a small inline SVG drawn on it.
	Color template.CSS
	Icon  template.HTML
}

// catalog is the shop's fixed stock, in display order.
var catalog = []product{
	{ID: "tea", Name: "Lapsang Tea", Blurb: "Smoky loose leaf, 100 g tin.", Price: 950, Color: "#f4d8c5",
		Icon: `<svg viewBox="0 0 64 64" aria-hidden="true"><rect x="18" y="14" width="28" height="40" rx="4" fill="#b5532f"/><rect x="18" y="24" width="28" height="12" fill="#f6e7dc"/><rect x="16" y="10" width="32" height="6" rx="2" fill="#7c3a22"/></svg>`},
	{ID: "mug", Name: "Stoneware Mug", Blurb: "Holds a generous 350 ml.", Price: 1400, Color: "#d6e4f0",
		Icon: `<svg viewBox="0 0 64 64" aria-hidden="true"><path d="M14 18h30v26a8 8 0 0 1-8 8H22a8 8 0 0 1-8-8z" fill="#3c6e9f"/><path d="M44 24h4a7 7 0 0 1 0 14h-4" fill="none" stroke="#3c6e9f" stroke-width="5"/></svg>`},
	{ID: "notebook", Name: "Dot-Grid Notebook", Blurb: "A5, 160 pages, lays flat.", Price: 1100, Color: "#e2ecd9",
		Icon: `<svg viewBox="0 0 64 64" aria-hidden="true"><rect x="16" y="10" width="34" height="44" rx="3" fill="#4f7a3a"/><rect x="20" y="10" width="4" height="44" fill="#3b5d2b"/><rect x="40" y="10" width="4" height="20" fill="#e5b53d"/></svg>`},
	{ID: "socks", Name: "Merino Socks", Blurb: "Warm, soft, one size.", Price: 1200, Color: "#efe0f2",
		Icon: `<svg viewBox="0 0 64 64" aria-hidden="true"><path d="M24 8h16v28l-10 14a8 8 0 0 1-13-9l7-9z" fill="#8a4f9e"/><rect x="24" y="8" width="16" height="6" fill="#5e3370"/></svg>`},
	{ID: "candle", Name: "Fig Candle", Blurb: "Soy wax, 40 hours.", Price: 1800, Color: "#f6ecc9",
		Icon: `<svg viewBox="0 0 64 64" aria-hidden="true"><rect x="20" y="26" width="24" height="28" rx="3" fill="#c7962c"/><path d="M32 10c5 6 5 11 0 13c-5-2-5-7 0-13z" fill="#e8612c"/><rect x="31" y="22" width="2" height="5" fill="#333"/></svg>`},
	{ID: "cactus", Name: "Tiny Cactus", Blurb: "Thrives on neglect.", Price: 750, Color: "#dcefe6",
		Icon: `<svg viewBox="0 0 64 64" aria-hidden="true"><rect x="27" y="12" width="10" height="32" rx="5" fill="#2f8a5f"/><path d="M27 30h-6a4 4 0 0 1-4-4v-6" fill="none" stroke="#2f8a5f" stroke-width="5" stroke-linecap="round"/><path d="M22 44h20l-3 12H25z" fill="#c0673f"/></svg>`},
}

func productByID(id string) (product, bool) {
	for _, p := range catalog {
		if p.ID == id {
			return p, true
		}
	}
	return product{}, false
}

// money formats cents as dollars.
func money(cents int) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

var (
	adjectives = []string{
		"Curious", "Sleepy", "Brave", "Gentle", "Jolly", "Clever", "Quiet", "Lucky", "Sunny", "Witty",
		"Nimble", "Cosy", "Bold", "Calm", "Merry", "Swift", "Plucky", "Dapper", "Breezy", "Spry",
	}
	animals = []string{
		"Otter", "Badger", "Heron", "Fox", "Panda", "Lynx", "Owl", "Hedgehog", "Walrus", "Koala",
		"Puffin", "Moose", "Beaver", "Falcon", "Gecko", "Llama", "Marten", "Narwhal", "Quokka", "Wombat",
	}
)

// guestName is the shop's Options.GenerateName: a friendly name for a page
// greeting, not an identifier (the guest's id is), so math/rand is enough.
func guestName(context.Context) string {
	return adjectives[rand.IntN(len(adjectives))] + " " + animals[rand.IntN(len(animals))]
}
