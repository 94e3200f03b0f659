//go:build race

package bench_test

// raceBuild is true under the race detector, whose instrumentation
// allocates: allocation counts are checked without it.
const raceBuild = true
