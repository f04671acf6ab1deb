package cli

import (
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocs_CommandList: docs/cli.md's command table, the help's command
// list and the "unknown command" check name the same commands, and the
// operations guide has the sections the CLI points to.
func TestDocs_CommandList(t *testing.T) {
	var g grammar
	parser, err := newParser(&g, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var model []string
	for _, n := range parser.Model.Children {
		if !n.Hidden {
			model = append(model, n.Name)
		}
	}
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(doc), "## Commands")
	table, _, _ = strings.Cut(table, "\n## ")
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z]+)` \\|").FindAllStringSubmatch(table, -1) {
		documented = append(documented, m[1])
	}
	stdout, _ := runWant(t, []string{"--help"}, 0, "", "")
	var helped []string
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+)(?: [a-z]+)?  `).FindAllStringSubmatch(stdout.String(), -1) {
		if !slices.Contains(helped, m[1]) {
			helped = append(helped, m[1])
		}
	}
	for name, list := range map[string][]string{"docs/cli.md": documented, "tiercache --help": helped, "commandNames": commandNames} {
		a, b := slices.Sorted(slices.Values(model)), slices.Sorted(slices.Values(list))
		if !slices.Equal(a, b) {
			t.Errorf("%s names %v; the commands are %v", name, b, a)
		}
	}
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"\n## Everyday operations\n", "\n## Verifying a deployment\n"} {
		if !strings.Contains(string(ops), h) {
			t.Errorf("docs/operations.md lacks %q", strings.TrimSpace(h))
		}
	}
	for _, c := range []string{"0", "1", "2", "3", "4"} {
		if !regexp.MustCompile("(?m)^\\| " + c + " \\|").Match(doc) {
			t.Errorf("docs/cli.md does not document exit code %s", c)
		}
	}
}
