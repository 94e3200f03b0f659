package anonymous

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func oneCharge(key string, burst int) []Charge {
	return []Charge{{Key: key, Level: Level{By: "ipv4/32", Burst: burst, Rate: 1, Period: time.Hour}}}
}

// The in-memory limiter remembers at most its bound of budgets, forgetting
// the one used least recently; while it is full, a client it does not
// remember starts with an empty burst, not a fresh one.
func TestMemLimiterIsBoundedWithoutAmnesty(t *testing.T) {
	l := newMemLimiter(3)
	ctx := context.Background()
	for i := range 3 {
		if wait, _ := l.Take(ctx, oneCharge(fmt.Sprint("client-", i), 5)); wait != 0 {
			t.Fatalf("client %d refused its first guest", i)
		}
	}
	for i := 3; i < 10; i++ {
		if wait, _ := l.Take(ctx, oneCharge(fmt.Sprint("client-", i), 5)); wait <= 0 {
			t.Fatalf("client %d, new while the table is full, was given a guest from a fresh burst", i)
		}
	}
	if n := len(l.byKey); n > 3 || l.lru.Len() > 3 {
		t.Fatalf("the limiter remembers %d budgets (%d in its list), want at most 3", n, l.lru.Len())
	}
}

// Take is all or none: a charge over its budget takes nothing from the
// others; Refund gives back what Take took.
func TestMemLimiterAllOrNothing(t *testing.T) {
	l := newMemLimiter(100)
	ctx := context.Background()
	fine := Charge{Key: "fine", Level: Level{By: "ipv6/64", Burst: 2, Rate: 1, Period: time.Hour}}
	tight := Charge{Key: "tight", Level: Level{By: "ipv6/48", Burst: 1, Rate: 1, Period: time.Hour}}
	if wait, _ := l.Take(ctx, []Charge{fine, tight}); wait != 0 {
		t.Fatal("first guest refused")
	}
	if wait, _ := l.Take(ctx, []Charge{fine, tight}); wait <= 0 || wait > time.Hour {
		t.Fatalf("second guest: wait %v, want up to an hour (tight is spent)", wait)
	}
	// The refused take took nothing from fine: it has one guest left.
	if wait, _ := l.Take(ctx, []Charge{fine}); wait != 0 {
		t.Fatal("a refused take spent fine's budget")
	}
	if err := l.Refund(ctx, []Charge{fine, tight}); err != nil {
		t.Fatal(err)
	}
	if wait, _ := l.Take(ctx, []Charge{tight}); wait != 0 {
		t.Fatal("a refunded guest was not given back")
	}
}

func TestEmbeddedIPv4(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                            "192.0.2.1",
		"::ffff:192.0.2.1":                     "192.0.2.1",
		"2002:c000:201::1":                     "192.0.2.1",
		"2002:c000:201:ffff:1:2:3:4":           "192.0.2.1",
		"2001:0:4136:e378:8000:63bf:3fff:fdfe": "192.0.2.1",
		"2001:db8::1":                          "",
		"2001:1::1":                            "", // not Teredo: 2001:0::/32 only
	} {
		got, ok := embeddedIPv4(netip.MustParseAddr(in))
		if (want == "") == ok || ok && got.String() != want {
			t.Errorf("embeddedIPv4(%s) = %v, %v; want %q", in, got, ok, want)
		}
	}
}

// A client's charges: one per level of its family, finest first, named by
// the level and the prefix; an invalid address is every level's "unknown".
func TestCharges(t *testing.T) {
	b := Budget{Levels: append(DefaultLevels(), Level{By: "site", Burst: 1, Rate: 1, Period: time.Hour})}
	keys := func(a netip.Addr) []string {
		var ks []string
		for _, c := range b.charges(a) {
			ks = append(ks, c.Key)
		}
		return ks
	}
	for in, want := range map[string]string{
		"2001:db8:1:2:3::1": "ipv6/64 2001:db8:1:2::/64,ipv6/56 2001:db8:1::/56,ipv6/48 2001:db8:1::/48,site",
		"2002:c000:201::1":  "ipv4/32 192.0.2.1/32,site",
		"192.0.2.1":         "ipv4/32 192.0.2.1/32,site",
	} {
		if got := strings.Join(keys(netip.MustParseAddr(in)), ","); got != want {
			t.Errorf("charges(%s) = %s, want %s", in, got, want)
		}
	}
	if got := strings.Join(keys(netip.Addr{}), ","); got != "ipv6/64 unknown,ipv6/56 unknown,ipv6/48 unknown,ipv4/32 unknown,site" {
		t.Errorf("charges of no address = %s", got)
	}
	for _, bad := range []Level{{By: "ipv6/12", Burst: 1, Rate: 1, Period: 1}, {By: "ipv4/33", Burst: 1, Rate: 1, Period: 1},
		{By: "ipv6/064", Burst: 1, Rate: 1, Period: 1}, {By: "everyone", Burst: 1, Rate: 1, Period: 1}, {By: "site", Rate: 1, Period: 1}} {
		if bad.check() == nil {
			t.Errorf("level %+v passes its check", bad)
		}
	}
}
