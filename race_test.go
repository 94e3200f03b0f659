//go:build race

package anonymous

// RaceBuild is true under the race detector, whose instrumentation
// allocates: allocation counts are checked without it.
const RaceBuild = true
