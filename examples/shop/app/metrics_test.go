package app

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// After a scripted run against the shop, /metrics shows exactly what
// happened.
func TestMetricsCountTheRun(t *testing.T) {
	ts := newTestShop(t, Config{})
	const visitors, adds, logins, forgets = 6, 4, 2, 1
	var browsers []*browser
	for range visitors {
		b := ts.browser(t)
		b.get("/")   // a guest is issued, in its first-visit cookie
		b.add("tea") // its first return: stored, with its cart
		browsers = append(browsers, b)
	}
	for i := range adds {
		browsers[i].add("mug") // returning guests
	}
	browsers[0].login("alice", "wonderland")
	browsers[1].login("bob", "builder")
	ask := browsers[2].get("/forget")
	guest := regexp.MustCompile(`name="guest" value="([^"]+)"`).FindStringSubmatch(ask.body)
	if guest == nil {
		t.Fatalf("no confirmation form:\n%s", ask.body)
	}
	browsers[2].post("/forget", map[string][]string{"guest": {guest[1]}})

	resp, err := ts.srv.Client().Get(ts.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	got := map[string]int{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			got[name] = int(n)
		}
	}
	// Each guest is issued once; the pages after a login or a forget issue
	// nobody (a signed-in user gets no guest), but the forgotten guest's
	// browser gets a new one when it next asks for a page.
	want := map[string]int{
		`anonymous_guest_issued_total`:                                  visitors + forgets,
		`anonymous_guest_stored_total{anonymous_source="first_return"}`: visitors,
		`anonymous_guest_linked_total`:                                  logins,
		`anonymous_guest_deleted_total{anonymous_reason="link"}`:        logins,
		`anonymous_guest_deleted_total{anonymous_reason="application"}`: forgets,
		`anonymous_link_failed_total{anonymous_reason="callback"}`:      0,
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s = %d, want %d\n%s", name, got[name], n, body)
		}
	}
	if got[`anonymous_store_duration_seconds_count{anonymous_store_operation="get"}`] == 0 {
		t.Errorf("no store call timed:\n%s", body)
	}

	stats := ts.browser(t).get("/stats")
	for _, want := range []string{`id="stat-stored">6<`, `id="stat-linked">2 (2 today)<`, `id="stat-conversion">33.3 %<`} {
		if !strings.Contains(stats.body, want) {
			t.Errorf("the stats page lacks %q:\n%s", want, stats.body)
		}
	}
}
