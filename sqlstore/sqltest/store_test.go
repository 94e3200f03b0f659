package sqltest

import (
	"testing"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/sqlstore"
	"github.com/guestpass/anonymous/storetest"
)

// TestStore runs storetest's whole suite, Recovery clauses included, on
// each database: every subtest gets a store of its own table.
func TestStore(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			db := open(t, d)
			storetest.Run(t, func(t *testing.T) anonymous.Store {
				return newStore(t, db, d, sqlstore.Options{})
			})
		})
	}
}

// TestStoreMySQLFoundRows: with clientFoundRows=true in the DSN, MySQL
// counts a row an INSERT … ON DUPLICATE KEY UPDATE left alone as affected,
// as it counts an inserted one; Create must still tell a live key from a
// new one. interpolateParams is on too, for the statements not prepared.
func TestStoreMySQLFoundRows(t *testing.T) {
	db := open(t, sqlstore.MySQL, "clientFoundRows=true", "interpolateParams=true")
	storetest.Run(t, func(t *testing.T) anonymous.Store {
		return newStore(t, db, sqlstore.MySQL, sqlstore.Options{})
	})
}
