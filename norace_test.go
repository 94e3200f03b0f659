//go:build !race

package anonymous_test

const raceBuild = false
