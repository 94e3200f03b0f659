package examplestore_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/guestpass/anonymous"
	"github.com/guestpass/anonymous/internal/examplestore"
	"github.com/guestpass/anonymous/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) anonymous.Store { return examplestore.New() })
}

// TestDocShowsSource fails when the code docs/stores.md shows differs from
// examplestore.go: a reader copies the doc, and only the file is tested.
func TestDocShowsSource(t *testing.T) {
	src, err := os.ReadFile("examplestore.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/stores.md")
	if err != nil {
		t.Fatal(err)
	}
	var shown [][]byte
	for rest := doc; ; {
		_, block, ok := bytes.Cut(rest, []byte("\n```go\n"))
		if !ok {
			break
		}
		block, rest, ok = bytes.Cut(block, []byte("\n```\n"))
		if !ok {
			t.Fatal("docs/stores.md: a ```go block is not closed")
		}
		if bytes.Contains(block, []byte("\npackage examplestore\n")) {
			shown = append(shown, append(block, '\n'))
		}
	}
	if len(shown) != 1 {
		t.Fatalf("docs/stores.md shows package examplestore in %d ```go blocks, want 1", len(shown))
	}
	if bytes.Equal(shown[0], src) {
		return
	}
	got, want := strings.Split(string(shown[0]), "\n"), strings.Split(string(src), "\n")
	for i := range max(len(got), len(want)) {
		g, w := "(end)", "(end)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("docs/stores.md differs from examplestore.go at line %d of the code:\n\tdoc:  %q\n\tfile: %q\ncopy examplestore.go into the doc's ```go block", i+1, g, w)
		}
	}
}
