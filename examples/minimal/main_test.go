package main

import (
	"os"
	"strings"
	"testing"
)

// The example stays short enough to read at a glance and copy.
func TestMinimalIsShort(t *testing.T) {
	b, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 100 {
		t.Errorf("main.go is %d lines, want at most 100", n)
	}
}
