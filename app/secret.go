package app

import "strings"

// exampleSecret reports whether s is a cluster secret that must never be
// used: one printed in confab's own docs, deploy files, Makefile, scripts
// or tests (anyone can read them), or a trivially guessable one (one short
// pattern repeated, e.g. all the same character). THE list of known example
// secrets; add any new example here.
func exampleSecret(s string) bool {
	switch strings.ToLower(s) {
	case "change-me-please-0123456789", // deploy/docker-compose.yml (old default)
		"0123456789abcdef",                       // app tests
		"0123456789abcdef-test-secret",           // cluster tests
		"another-cluster-secret-0123",            // cluster/pipe tests
		"another-secret-of-16+bytes",             // cluster/pipe tests
		"not-the-cluster-secret-at-all",          // cluster/pipe tests
		"confab-dev-cluster-secret",              // tools/cluster.sh (old default)
		"confab-bench-cluster-secret-0123456789", // tools/bench.sh (old)
		"metrics-test-secret-0123456789",         // app tests (old)
		"placement-test-secret-0123456789",       // cmd/confab tests (old)
		"change-me", "changeme", "secret", "password",
		"your-secret-here", "your-cluster-secret", "cluster-secret":
		return true
	}
	return repeatsShortPattern(s)
}

// repeatsShortPattern reports whether s is a pattern of at most four
// bytes repeated ("aaaa...", "abab...", "abcdabcd...").
func repeatsShortPattern(s string) bool {
	for p := 1; p <= 4 && p < len(s); p++ {
		if s[p:] == s[:len(s)-p] {
			return true
		}
	}
	return false
}
