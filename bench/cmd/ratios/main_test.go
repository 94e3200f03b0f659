package main

import (
	"math"
	"strings"
	"testing"
)

const raw = `goos: linux
goarch: amd64
pkg: github.com/guestpass/anonymous/bench
BenchmarkReturning/rawget-2          	   50000	     20000 ns/op	     300 B/op	       9 allocs/op
BenchmarkReturning/rawget-2          	   50000	     22000 ns/op	     300 B/op	       9 allocs/op
BenchmarkReturning/rawget-2          	   50000	     90000 ns/op	     300 B/op	       9 allocs/op
BenchmarkReturning/scs-memstore-2    	 1000000	      1000 ns/op	    2000 B/op	      20 allocs/op
BenchmarkReturning/scs-memstore-2    	 1000000	      1200 ns/op	    2000 B/op	      20 allocs/op
BenchmarkReturning/scs-memstore-2    	 1000000	      1100 ns/op	    2000 B/op	      20 allocs/op
BenchmarkReturning/anonymous-memstore-onreturn-2 	 3000000	       250 ns/op	     100 B/op	       3 allocs/op
BenchmarkReturning/anonymous-memstore-onreturn-2 	 3000000	       350 ns/op	     100 B/op	       4 allocs/op
BenchmarkReturning/anonymous-memstore-onreturn-2 	 3000000	       300 ns/op	     100 B/op	       4 allocs/op
BenchmarkReturning/anonymous-redisstore-onissue-2 	   50000	     25000 ns/op	     500 B/op	      12 allocs/op
BenchmarkNew/scs-memstore-2          	  500000	      3000 ns/op	    3000 B/op	      30 allocs/op
BenchmarkNew/anonymous-memstore-onreturn-2 	  500000	      1600 ns/op	    1000 B/op	      10 allocs/op
BenchmarkFloor/returning-2 	 3000000	       250 ns/op	     100 B/op	       2 allocs/op
BenchmarkFloor/new-2 	 1000000	      1000 ns/op	     400 B/op	       2 allocs/op
BenchmarkFloor/returning-redis-2 	   50000	     24000 ns/op	     400 B/op	       9 allocs/op
BenchmarkPaired/redis-2 	   20000	    150000 ns/op	 54000 anonymous-redisstore-ns/op	 50000 floor-redis-ns/op	 46000 rawget-ns/op	 3000 B/op	 28 allocs/op
BenchmarkPaired/redis-2 	   20000	    160000 ns/op	 56000 anonymous-redisstore-ns/op	 52000 floor-redis-ns/op	 52000 rawget-ns/op	 3000 B/op	 28 allocs/op
BenchmarkPaired/redis-2 	   20000	    170000 ns/op	 60000 anonymous-redisstore-ns/op	 55000 floor-redis-ns/op	 50000 rawget-ns/op	 3000 B/op	 28 allocs/op
BenchmarkScale/memstore/guests=1000-2 	 100000	      2000 ns/op	 1900 cpu-ns/op	 100.0 gc-ns/op	 300 heap-B/guest	 1200 B/op	 3 allocs/op
BenchmarkPaired/memstore-2 	 1000000	      3000 ns/op	 2100 anonymous-memstore-ns/op	 900 floor-ns/op	 1800 B/op	 4 allocs/op
--- BENCH: BenchmarkNew/foo
PASS
ok  	github.com/guestpass/anonymous/bench	10.0s
`

func parsed(t *testing.T) results {
	t.Helper()
	res := results{}
	if err := res.parse(strings.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestParseMedians(t *testing.T) {
	res := parsed(t)
	for _, tc := range []struct {
		group, contender string
		ns, allocs       float64
	}{
		{"Returning", "rawget", 22000, 9},
		{"Returning", "scs-memstore", 1100, 20},
		{"Returning", "anonymous-memstore-onreturn", 300, 4},
		{"Returning", "anonymous-redisstore-onissue", 25000, 12},
		{"New", "scs-memstore", 3000, 30},
	} {
		ns, allocs := res.med(tc.group, tc.contender)
		if ns != tc.ns || allocs != tc.allocs {
			t.Errorf("%s/%s: medians %v ns/op %v allocs/op, want %v and %v", tc.group, tc.contender, ns, allocs, tc.ns, tc.allocs)
		}
	}
	if ns, _ := res.med("Returning", "gorilla-cookiestore"); !math.IsNaN(ns) {
		t.Errorf("absent contender has median %v, want NaN", ns)
	}
	// A paired benchmark's sides are contenders of a group of their own.
	if ns, _ := res.med("Paired/redis", "floor-redis"); ns != 52000 {
		t.Errorf("Paired/redis floor-redis: median %v ns/op, want 52000", ns)
	}
	if res["Paired"] != nil {
		t.Errorf("the paired lines' sums were kept, as group Paired: %v", res["Paired"])
	}
	// Another benchmark's "-ns/op" metrics are not sides.
	if ns, _ := res.med("Scale", "memstore/guests=1000"); ns != 2000 || res["Scale/memstore/guests=1000"] != nil {
		t.Errorf("Scale: median %v ns/op (want 2000), groups %v", ns, sortedKeys(res))
	}
	if got := len(res["Returning"]["rawget"].ns); got != 3 {
		t.Errorf("rawget has %d samples, want 3", got)
	}
}

func TestMedianEven(t *testing.T) {
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median = %v, want 2.5", got)
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median of nothing = %v, want NaN", got)
	}
}

func TestTrimProcs(t *testing.T) {
	for in, want := range map[string]string{
		"scs-memstore-2":                 "scs-memstore",
		"anonymous-memstore-onreturn-16": "anonymous-memstore-onreturn",
		"bare":                           "bare",
		"gorilla-cookiestore":            "gorilla-cookiestore",
	} {
		if got := trimProcs(in); got != want {
			t.Errorf("trimProcs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTargets(t *testing.T) {
	vs := parsed(t).checkTargets()
	want := map[string]struct {
		got float64
		met bool
	}{
		// 300 / 1100
		"Returning anonymous-memstore-onreturn: ns/op ≤ 0.3× scs-memstore": {300.0 / 1100, true},
		// 4 / 20
		"Returning anonymous-memstore-onreturn: allocs/op ≤ 0.2× scs-memstore": {0.2, true},
		// 25000 / 22000
		"Returning anonymous-redisstore-onissue: ns/op ≤ 1.1× rawget": {25000.0 / 22000, false},
		"Returning anonymous-redisstore-onissue: allocs/op ≤ 10":      {12, false},
		// 1600 / 3000
		"New anonymous-memstore-onreturn: ns/op ≤ 0.5× scs-memstore": {1600.0 / 3000, false},
		// 300 / 250
		"Returning anonymous-memstore-onreturn: ns/op ≤ 2× Floor/returning": {300.0 / 250, true},
		"Returning anonymous-memstore-onreturn: allocs/op ≤ 5":              {4, true},
		// 1600 / 1000
		"New anonymous-memstore-onreturn: ns/op ≤ 1.5× Floor/new": {1.6, false},
		// medians 56000 / 50000
		"Paired redis anonymous-redisstore: ns/op ≤ 1.1× rawget": {1.12, false},
		// 2100 / 900
		"Paired memstore anonymous-memstore: ns/op ≤ 2× floor": {2100.0 / 900, false},
	}
	seen := 0
	for _, v := range vs {
		w, ok := want[v.target]
		if !ok {
			if !math.IsNaN(v.got) || v.met() {
				t.Errorf("%s: got %v met=%v, want unmeasured", v.target, v.got, v.met())
			}
			continue
		}
		seen++
		if math.Abs(v.got-w.got) > 1e-9 || v.met() != w.met {
			t.Errorf("%s: got %v met=%v, want %v met=%v", v.target, v.got, v.met(), w.got, w.met)
		}
	}
	if seen != len(want) {
		t.Errorf("checked %d of the %d expected targets", seen, len(want))
	}
	var out strings.Builder
	if printTargets(&out, vs) {
		t.Error("printTargets reported all met, but some are not")
	}
	if !strings.Contains(out.String(), "not measured") {
		t.Errorf("missing contenders are not reported as not measured:\n%s", out.String())
	}
}
