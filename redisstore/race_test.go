//go:build race

package redisstore_test

// raceBuild is true under the race detector, whose instrumentation
// allocates: allocation counts are checked without it.
const raceBuild = true
