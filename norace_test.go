//go:build !race

package anonymous

const RaceBuild = false
