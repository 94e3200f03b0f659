package sqlstore_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// drivers are the module paths of SQL drivers: none may reach the packages
// of a program built on the module, but the demo's.
var drivers = []string{
	"github.com/jackc/", "github.com/go-sql-driver/", "modernc.org/",
	"github.com/lib/pq", "github.com/mattn/go-sqlite3", "github.com/ncruces/",
}

func isDriver(path string) bool {
	return slices.ContainsFunc(drivers, func(p string) bool { return strings.HasPrefix(path, p) })
}

// goList runs `go list` in the module's root and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH: %v", err)
	}
	cmd := exec.Command(gocmd, append([]string{"list"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.Fields(string(out))
}

// TestNoDriver: a program that imports the package and memstore or
// redisstore builds no SQL driver, nor database/sql; sqlstore adds
// database/sql and nothing outside the standard library; and of the
// module's packages only the demo shop (-postgres) and the tests' helper
// internal/pgtest build one: pgx, in the module's build list for them, as
// the metrics exporter is for the demo. The drivers of sqlstore's own tests
// live in the sqltest module.
func TestNoDriver(t *testing.T) {
	const nonstd = `{{if not .Standard}}{{.ImportPath}}{{end}}`
	stores := []string{".", "./memstore", "./redisstore"}
	without := goList(t, append([]string{"-deps", "-f", nonstd}, stores...)...)
	with := goList(t, append([]string{"-deps", "-f", nonstd}, append(stores, "./sqlstore")...)...)
	for _, p := range with {
		if isDriver(p) {
			t.Errorf("go list -deps of the stores lists the driver package %s", p)
		}
	}
	if added := slices.DeleteFunc(slices.Clone(with), func(p string) bool {
		return slices.Contains(without, p) || p == "github.com/guestpass/anonymous/sqlstore"
	}); len(added) > 0 {
		t.Errorf("sqlstore adds packages outside the standard library: %v", added)
	}
	std := goList(t, append([]string{"-deps"}, stores...)...)
	if slices.Contains(std, "database/sql") {
		t.Errorf("the root package, memstore or redisstore imports database/sql")
	}
	demo := []string{"github.com/guestpass/anonymous/examples/shop", "github.com/guestpass/anonymous/internal/pgtest"}
	rest := slices.DeleteFunc(goList(t, "./..."), func(p string) bool { return slices.Contains(demo, p) })
	for _, p := range goList(t, append([]string{"-deps", "-f", nonstd}, rest...)...) {
		if isDriver(p) {
			t.Errorf("go list -deps of the module's packages but the demo lists the driver package %s", p)
		}
	}
}

// TestNoExporter: the shop's metrics exporter (the OpenTelemetry
// Prometheus exporter and client_golang, in the module's build list for
// the demo) reaches no program that imports the package and a store.
func TestNoExporter(t *testing.T) {
	const nonstd = `{{if not .Standard}}{{.ImportPath}}{{end}}`
	for _, p := range goList(t, "-deps", "-f", nonstd, ".", "./memstore", "./redisstore", "./sqlstore", "./examples/minimal") {
		if strings.HasPrefix(p, "github.com/prometheus/") || strings.HasPrefix(p, "go.opentelemetry.io/otel/exporters/") {
			t.Errorf("go list -deps of the package, its stores and examples/minimal lists the exporter package %s", p)
		}
	}
}
