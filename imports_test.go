// Package confab_test holds repository-wide checks that belong to no single
// package. TestImportDirection enforces the package layering of confab:
//
//	cmd/confab -> app -> {web, cluster, sfu, relay}
//	cmd/confab-load -> tools (the load generator and its helpers)
//	web        -> {sfu, templates, static}
//	cluster    -> sfu
//	templates  -> static
//	sfu, static, relay: import nothing of ours (relay: the embedded TURN
//	       server; web gets its credentials through web.Deps, wired by app)
//	tools: imports only other tools packages and internal (the load
//	       generator is a client of the documented wire protocol, not of
//	       our Go API)
//	internal: helpers shared by tests and tools (internal/peer: the
//	       answering side of a server-offered peer connection;
//	       internal/buffer: a buffer safe for concurrent use); imports
//	       nothing of ours but other internal packages
//
// Only production imports (not test imports) are checked. Sub-packages belong
// to their top-level directory's layer (web/internal/x counts as web).
package confab_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/confab/confab"

// layers maps each top-level package directory to the module packages it may
// import. A package whose layer is missing here fails the test, so a new
// package has to be placed in the layering on purpose.
var layers = map[string][]string{
	"cmd":       {"app", "tools"},
	"app":       {"web", "cluster", "sfu", "relay"},
	"web":       {"sfu", "templates", "static"},
	"cluster":   {"sfu"},
	"templates": {"static"},
	"static":    {},
	"sfu":       {},
	"tools":     {"internal"},
	"internal":  {},
	"relay":     {},
}

// edge is one module-internal import: from imports to (both module-relative).
type edge struct{ from, to string }

// forbidden lists the edges the design explicitly rules out, with the reason
// shown when one appears. It overlaps with layers on purpose: these are the
// cases the design documents by name, and checkEdges is tested against them.
var forbidden = []struct {
	from, to string
	why      string
}{
	{"sfu", "*", "sfu is the leaf media engine and imports nothing of ours"},
	{"web", "cluster", "web and cluster never import each other (app wires them)"},
	{"web", "app", "only cmd imports app"},
	{"cluster", "web", "web and cluster never import each other (app wires them)"},
	{"cluster", "app", "only cmd imports app"},
	{"cluster", "templates", "cluster has no pages"},
	{"templates", "sfu", "templates are leaf presentation code"},
	{"templates", "cluster", "templates are leaf presentation code"},
	{"templates", "web", "templates are leaf presentation code"},
	{"static", "sfu", "static holds assets only"},
	{"static", "cluster", "static holds assets only"},
	{"static", "web", "static holds assets only"},
	{"*", "cmd", "nothing imports a command"},
	{"tools", "app", "tools speak the wire protocol; they import nothing of ours but tools and internal"},
	{"tools", "web", "tools speak the wire protocol; they import nothing of ours but tools and internal"},
	{"tools", "cluster", "tools speak the wire protocol; they import nothing of ours but tools and internal"},
	{"tools", "sfu", "tools speak the wire protocol; they import nothing of ours but tools and internal"},
	{"internal", "*", "internal helpers import nothing of ours"},
	{"relay", "*", "relay (the TURN server) imports nothing of ours"},
	{"web", "relay", "web gets TURN credentials through web.Deps.ICEServers; app wires the relay"},
}

// layer returns the top-level directory of a module-relative package path.
func layer(pkg string) string {
	top, _, _ := strings.Cut(pkg, "/")
	return top
}

// checkEdges returns one message per import that breaks the layering.
func checkEdges(edges []edge) []string {
	var bad []string
	for _, e := range edges {
		from, to := layer(e.from), layer(e.to)
		if from == to && from != "cmd" {
			continue // within one layer, e.g. web -> web/internal/x
		}
		why := ""
		for _, f := range forbidden {
			if (f.from == "*" || f.from == from) && (f.to == "*" || f.to == to) {
				why = f.why
				break
			}
		}
		if why == "" {
			allowed, known := layers[from]
			switch {
			case !known:
				why = fmt.Sprintf("package layer %q is not in the layering table of imports_test.go", from)
			case !slices.Contains(allowed, to):
				why = fmt.Sprintf("%s may import only %v", from, allowed)
			}
		}
		if why != "" {
			bad = append(bad, fmt.Sprintf("%s -> %s: %s", e.from, e.to, why))
		}
	}
	sort.Strings(bad)
	return bad
}

// moduleEdges lists the module-internal production imports of every package
// in the module, using `go list`.
func moduleEdges(t *testing.T) []edge {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var edges []edge
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		from, ok := relative(fields[0])
		if !ok || from == "" {
			continue // the module root holds only tests like this one
		}
		for _, imp := range fields[1:] {
			if to, ok := relative(imp); ok {
				edges = append(edges, edge{from, to})
			}
		}
	}
	return edges
}

// relative strips the module path; ok is false for packages outside it.
func relative(pkg string) (string, bool) {
	if pkg == module {
		return "", true
	}
	rest, ok := strings.CutPrefix(pkg, module+"/")
	return rest, ok
}

func TestImportDirection(t *testing.T) {
	edges := moduleEdges(t)
	if len(edges) == 0 {
		t.Fatal("go list found no module-internal imports; is the test running at the module root?")
	}
	for _, msg := range checkEdges(edges) {
		t.Errorf("forbidden import %s", msg)
	}
}

// TestCheckEdges shows that checkEdges catches every documented violation and
// accepts every documented allowed edge.
func TestCheckEdges(t *testing.T) {
	tests := []struct {
		name string
		edge edge
		ok   bool
	}{
		{"cmd imports app", edge{"cmd/confab", "app"}, true},
		{"app imports web", edge{"app", "web"}, true},
		{"app imports cluster", edge{"app", "cluster"}, true},
		{"app imports sfu", edge{"app", "sfu"}, true},
		{"web imports sfu", edge{"web", "sfu"}, true},
		{"web imports templates", edge{"web", "templates"}, true},
		{"web imports static", edge{"web", "static"}, true},
		{"cluster imports sfu", edge{"cluster", "sfu"}, true},
		{"templates imports static", edge{"templates", "static"}, true},
		{"sub-package of the same layer", edge{"sfu", "sfu/internal/rtpx"}, true},
		{"load command imports tools", edge{"cmd/confab-load", "tools/load"}, true},
		{"tools imports another tools package", edge{"tools/load", "tools/clip"}, true},
		{"tools imports web", edge{"tools/load", "web"}, false},
		{"tools imports sfu", edge{"tools/load", "sfu"}, false},
		{"tools imports internal", edge{"tools/load", "internal/peer"}, true},
		{"internal imports sfu", edge{"internal/peer", "sfu"}, false},
		{"tools imports app", edge{"tools/load", "app"}, false},
		{"sfu imports web", edge{"sfu", "web"}, false},
		{"sfu imports cluster", edge{"sfu", "cluster"}, false},
		{"sfu imports static", edge{"sfu", "static"}, false},
		{"web imports cluster", edge{"web", "cluster"}, false},
		{"web imports app", edge{"web", "app"}, false},
		{"cluster imports web", edge{"cluster", "web"}, false},
		{"cluster imports app", edge{"cluster", "app"}, false},
		{"cluster imports templates", edge{"cluster", "templates"}, false},
		{"templates imports sfu", edge{"templates", "sfu"}, false},
		{"templates imports cluster", edge{"templates", "cluster"}, false},
		{"templates imports web", edge{"templates", "web"}, false},
		{"static imports sfu", edge{"static", "sfu"}, false},
		{"static imports web", edge{"static", "web"}, false},
		{"app imports cmd", edge{"app", "cmd/confab"}, false},
		{"cmd imports another cmd", edge{"cmd/confab", "cmd/other"}, false},
		{"sfu imports app", edge{"sfu", "app"}, false},
		{"unknown layer", edge{"util", "sfu"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := checkEdges([]edge{tt.edge})
			if tt.ok && len(bad) > 0 {
				t.Errorf("checkEdges rejected allowed edge: %v", bad)
			}
			if !tt.ok && len(bad) == 0 {
				t.Errorf("checkEdges accepted forbidden edge %s -> %s", tt.edge.from, tt.edge.to)
			}
			if !tt.ok && len(bad) == 1 && !strings.HasPrefix(bad[0], tt.edge.from+" -> "+tt.edge.to+": ") {
				t.Errorf("message %q does not show the offending edge", bad[0])
			}
		})
	}
}
