//go:build tools

// Package consul pins the Consul agent used by confab's tests. It is built
// with `go build -o bin/consul github.com/hashicorp/consul` from this module.
package consul

import _ "github.com/hashicorp/consul"
