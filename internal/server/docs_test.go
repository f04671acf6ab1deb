package server

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestDocs_HTTPAPIRoutes checks that docs/http-api.md lists every route
// the server registers (routes in server.go), as "`METHOD /path".
func TestDocs_HTTPAPIRoutes(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("server.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "http-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	routes := regexp.MustCompile(`mux\.Handle(?:Func)?\("([A-Z]+) ([^"]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(routes) < 12 {
		t.Fatalf("found %d routes in server.go; the pattern no longer matches the code", len(routes))
	}
	for _, m := range routes {
		path := strings.NewReplacer("{key...}", "{key}", "{$}", "").Replace(m[2])
		want := "`" + m[1] + " " + path
		if !strings.HasSuffix(path, "/") || path == "/" {
			want += "`"
		}
		if m[2] == "/v1/cache/{key...}" && m[1] == "PUT" {
			want = "`PUT /v1/cache/{key}?" // documented with its parameters
		}
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/http-api.md does not list %s %s (looked for %s)", m[1], m[2], want)
		}
	}
}

// errorCodes are the codes the server answers with: the code... constants
// of errors.go.
func errorCodes(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("errors.go")
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, m := range regexp.MustCompile(`(?m)^\tcode[A-Za-z]+ += "([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		codes = append(codes, m[1])
	}
	if len(codes) < 10 {
		t.Fatalf("found %d error codes in errors.go; the pattern no longer matches the code", len(codes))
	}
	return codes
}

var (
	docCodesOnce sync.Once
	docCodes     map[string]bool
	docCodesErr  error
)

// documentedCodes returns the error codes docs/http-api.md lists: the
// first cell of each row of its table of codes, "| `code` | status |".
func documentedCodes(t *testing.T) map[string]bool {
	t.Helper()
	docCodesOnce.Do(func() {
		var doc []byte
		doc, docCodesErr = os.ReadFile(filepath.Join("..", "..", "docs", "http-api.md"))
		docCodes = map[string]bool{}
		for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| [1-5][0-9][0-9] ").FindAllStringSubmatch(string(doc), -1) {
			docCodes[m[1]] = true
		}
	})
	if docCodesErr != nil {
		t.Fatal(docCodesErr)
	}
	return docCodes
}

// TestDocs_ErrorCodes checks that docs/http-api.md documents every error
// code the server uses, and no other.
func TestDocs_ErrorCodes(t *testing.T) {
	t.Parallel()
	doc := documentedCodes(t)
	used := map[string]bool{}
	for _, c := range errorCodes(t) {
		used[c] = true
		if !doc[c] {
			t.Errorf("docs/http-api.md does not document the error code %q", c)
		}
	}
	for c := range doc {
		if !used[c] {
			t.Errorf("docs/http-api.md documents the error code %q, which the server does not use", c)
		}
	}
}
