package server

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
