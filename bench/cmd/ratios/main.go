// Command ratios reads raw `go test -bench` output (several -count runs of
// the comparison benchmarks), takes each benchmark's median ns/op and
// allocs/op, and prints, per group (Returning, New), every contender's
// medians relative to scs-memstore and to rawget, then whether the
// performance targets are met. Its tables are Markdown.
//
//	go test -bench . -count 6 | tee raw.txt
//	go run ./cmd/ratios raw.txt
//
// With -strict it exits 1 when a target is not met or cannot be judged.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	strict := flag.Bool("strict", false, "exit 1 when a target is not met or cannot be judged")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: ratios [-strict] [raw-bench-output ...]  (default: standard input)")
		flag.PrintDefaults()
	}
	flag.Parse()
	res := results{}
	if flag.NArg() == 0 {
		if err := res.parse(os.Stdin); err != nil {
			fatal(err)
		}
	}
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if err != nil {
			fatal(err)
		}
		err = res.parse(f)
		f.Close()
		if err != nil {
			fatal(err)
		}
	}
	if len(res) == 0 {
		fatal(fmt.Errorf("no benchmark results in the input"))
	}
	res.printRatios(os.Stdout)
	fmt.Println()
	ok := printTargets(os.Stdout, res.checkTargets())
	if *strict && !ok {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "ratios:", err)
	os.Exit(2)
}

// samples are one benchmark's measurements, one per run.
type samples struct {
	ns, allocs []float64
}

// results maps group ("Returning") to contender ("scs-memstore") to its
// samples.
type results map[string]map[string]*samples

// parse adds the benchmark lines of r, e.g.
//
//	BenchmarkReturning/scs-memstore-2   1000000   1234 ns/op   456 B/op   7 allocs/op
//
// The "<side>-ns/op" metrics of a BenchmarkPaired line are samples of
// their own, contender <side> of group "Paired/redis" for
// BenchmarkPaired/redis, in place of the line's sums.
func (res results) parse(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l, ok := parseLine(sc.Text())
		if !ok {
			continue
		}
		if l.sides == nil {
			res.add(l.group, l.contender, l.ns, l.allocs)
		}
		for side, ns := range l.sides {
			res.add(l.group+"/"+l.contender, side, ns, math.NaN())
		}
	}
	return sc.Err()
}

// add records one run of group/contender.
func (res results) add(group, contender string, ns, allocs float64) {
	if res[group] == nil {
		res[group] = map[string]*samples{}
	}
	s := res[group][contender]
	if s == nil {
		s = &samples{}
		res[group][contender] = s
	}
	s.ns = append(s.ns, ns)
	s.allocs = append(s.allocs, allocs)
}

// line is one benchmark line: its group, its contender, its ns/op, its
// allocs/op (NaN when the line has none), and its sides' ns/op.
type line struct {
	group, contender string
	ns, allocs       float64
	sides            map[string]float64
}

// parseLine reads one benchmark line; false for another line.
func parseLine(text string) (line, bool) {
	f := strings.Fields(text)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
		return line{}, false
	}
	group, contender, ok := strings.Cut(strings.TrimPrefix(f[0], "Benchmark"), "/")
	if !ok {
		return line{}, false
	}
	l := line{group: group, contender: trimProcs(contender), ns: math.NaN(), allocs: math.NaN()}
	found := false
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			break
		}
		switch unit := f[i+1]; {
		case unit == "ns/op":
			l.ns, found = v, true
		case unit == "allocs/op":
			l.allocs = v
		case group == "Paired" && strings.HasSuffix(unit, "-ns/op"):
			if l.sides == nil {
				l.sides = map[string]float64{}
			}
			l.sides[strings.TrimSuffix(unit, "-ns/op")] = v
		}
	}
	return l, found
}

// trimProcs drops the "-N" GOMAXPROCS suffix go test adds to names.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// median of the values that are numbers; NaN when there are none.
func median(v []float64) float64 {
	v = slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// med returns the median ns/op and allocs/op of group/contender, NaN when
// absent.
func (res results) med(group, contender string) (ns, allocs float64) {
	s := res[group][contender]
	if s == nil {
		return math.NaN(), math.NaN()
	}
	return median(s.ns), median(s.allocs)
}

// The baselines every contender is compared with.
const (
	scsMem = "scs-memstore"
	rawGET = "rawget"
)

func (res results) printRatios(w io.Writer) {
	groups := sortedKeys(res)
	for i, g := range groups {
		if i > 0 {
			fmt.Fprintln(w)
		}
		scsNs, scsAllocs := res.med(g, scsMem)
		rawNs, rawAllocs := res.med(g, rawGET)
		fmt.Fprintf(w, "%s (medians of %d runs)\n\n", g, runs(res[g]))
		fmt.Fprintln(w, "| contender | ns/op | allocs/op | ns/op ÷ scs-memstore | allocs/op ÷ scs-memstore | ns/op ÷ rawget | allocs/op ÷ rawget |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|")
		for _, c := range contenderOrder(res[g]) {
			ns, allocs := res.med(g, c)
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", c, num(ns), num(allocs),
				ratio(ns, scsNs), ratio(allocs, scsAllocs), ratio(ns, rawNs), ratio(allocs, rawAllocs))
		}
	}
}

func runs(m map[string]*samples) int {
	n := 0
	for _, s := range m {
		n = max(n, len(s.ns))
	}
	return n
}

// contenderOrder lists the baselines first, then the rest by name.
func contenderOrder(m map[string]*samples) []string {
	var out []string
	for _, c := range []string{"bare", rawGET} {
		if m[c] != nil {
			out = append(out, c)
		}
	}
	for _, c := range sortedKeys(m) {
		if c != "bare" && c != rawGET {
			out = append(out, c)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + "×"
}

// verdict is one target checked against the medians.
type verdict struct {
	target string
	got    float64 // the measured ratio (or count); NaN when a contender is missing
	limit  float64
	count  bool // got is a count, not a ratio
}

func (v verdict) met() bool { return !math.IsNaN(v.got) && v.got <= v.limit }

// checkTargets compares the medians with the performance budget. The
// budget's other promises (no store operation for a new visitor under
// the default persistence, one Redis round trip) are checked by the package's
// tests, not by timing.
func (res results) checkTargets() []verdict {
	var out []verdict
	add := func(target string, a, b, limit float64) {
		got := math.NaN()
		if !math.IsNaN(a) && !math.IsNaN(b) && b != 0 {
			got = a / b
		}
		out = append(out, verdict{target: target, got: got, limit: limit})
	}
	count := func(target string, n, limit float64) {
		out = append(out, verdict{target: target, got: n, limit: limit, count: true})
	}
	scsNs, scsAllocs := res.med("Returning", scsMem)
	rawNs, _ := res.med("Returning", rawGET)
	for _, c := range []string{"anonymous-memstore-onreturn", "anonymous-memstore-onissue"} {
		ns, allocs := res.med("Returning", c)
		add("Returning "+c+": ns/op ≤ 0.3× scs-memstore", ns, scsNs, 0.3)
		add("Returning "+c+": allocs/op ≤ 0.2× scs-memstore", allocs, scsAllocs, 0.2)
	}
	for _, c := range []string{"anonymous-redisstore-onreturn", "anonymous-redisstore-onissue"} {
		ns, allocs := res.med("Returning", c)
		add("Returning "+c+": ns/op ≤ 1.1× rawget", ns, rawNs, 1.1)
		count("Returning "+c+": allocs/op ≤ 10", allocs, 10)
	}
	// The middleware's own path against the floor of its unavoidable
	// steps (BenchmarkFloor).
	floorNs, _ := res.med("Floor", "returning")
	for _, c := range []string{"anonymous-memstore-onreturn", "anonymous-memstore-onissue"} {
		ns, allocs := res.med("Returning", c)
		add("Returning "+c+": ns/op ≤ 2× Floor/returning", ns, floorNs, 2)
		count("Returning "+c+": allocs/op ≤ 5", allocs, 5)
	}
	// The same, each side taking turns with the others in one process
	// (BenchmarkPaired): a visitor's latency, with the machine's drift
	// falling on every side alike.
	pairedRawNs, _ := res.med("Paired/redis", rawGET)
	ns, _ := res.med("Paired/redis", "anonymous-redisstore")
	add("Paired redis anonymous-redisstore: ns/op ≤ 1.1× rawget", ns, pairedRawNs, 1.1)
	pairedMemFloorNs, _ := res.med("Paired/memstore", "floor")
	ns, _ = res.med("Paired/memstore", "anonymous-memstore")
	add("Paired memstore anonymous-memstore: ns/op ≤ 2× floor", ns, pairedMemFloorNs, 2)
	newFloorNs, _ := res.med("Floor", "new")
	ns, _ = res.med("New", "anonymous-memstore-onreturn")
	add("New anonymous-memstore-onreturn: ns/op ≤ 1.5× Floor/new", ns, newFloorNs, 1.5)
	newScsNs, _ := res.med("New", scsMem)
	for _, c := range []string{"anonymous-memstore-onreturn", "anonymous-redisstore-onreturn"} {
		ns, _ := res.med("New", c)
		add("New "+c+": ns/op ≤ 0.5× scs-memstore", ns, newScsNs, 0.5)
	}
	return out
}

// printTargets prints the verdicts and reports whether all were met.
func printTargets(w io.Writer, vs []verdict) bool {
	fmt.Fprintln(w, "| target | measured | met |")
	fmt.Fprintln(w, "|---|--:|---|")
	all := true
	for _, v := range vs {
		status := "yes"
		switch {
		case math.IsNaN(v.got):
			status, all = "not measured", false
		case !v.met():
			status, all = "NO", false
		}
		got := ratio(v.got, 1)
		if v.count {
			got = num(v.got)
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", v.target, got, status)
	}
	return all
}
