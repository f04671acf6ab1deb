package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the reference in docs/configuration.md")

const (
	docPath  = "../docs/configuration.md"
	refBegin = "<!-- reference: made from package config's table; go test ./config -run TestDocs -update -->\n"
	refEnd   = "<!-- end of reference -->\n"
)

// reference writes the table of every setting, one table per section.
func reference() string {
	var b strings.Builder
	section := ""
	for _, f := range Fields() {
		sec := f.Key[:strings.Index(f.Key, ".")]
		if sec != section {
			section = sec
			fmt.Fprintf(&b, "\n### %s\n\n| Key | Variable | Flag | Default | Meaning |\n| --- | --- | --- | --- | --- |\n", sec)
		}
		cell := func(s, format string) string {
			if s == "" {
				return ""
			}
			return fmt.Sprintf(format, s)
		}
		def := f.Default
		if def == "" && f.Type != "strategies" && f.Type != "rules" && f.Type != "list" {
			def = `""`
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s (%s) |\n", f.Key, cell(f.Env, "`%s`"), cell(f.Flag, "`--%s`"),
			cell(def, "`%s`"), strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(f.Help), f.Type)
	}
	return b.String()
}

// TestDocs fails when docs/configuration.md does not list every setting
// with its variable, flag and default as the table of package config has
// them. Run it with -update to rewrite the reference part.
func TestDocs(t *testing.T) {
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, refBegin), strings.Index(doc, refEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the reference markers %q and %q", docPath, refBegin, refEnd)
	}
	want := reference() + "\n"
	if got := doc[i+len(refBegin) : j]; got != want {
		if *update {
			doc = doc[:i+len(refBegin)] + want + doc[j:]
			if err := os.WriteFile(docPath, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("the reference in %s is not the table of package config; run go test ./config -run TestDocs -update", docPath)
	}
	for _, f := range Fields() {
		for _, s := range []string{"`" + f.Key + "`", f.Env, f.Flag} {
			if s != "" && !strings.Contains(doc, s) {
				t.Errorf("%s does not mention %s", docPath, s)
			}
		}
	}
	for _, s := range []string{"TIERCACHE_CONFIG", "--config", "STATE_DIRECTORY", "config print", "config check"} {
		if !strings.Contains(doc, s) {
			t.Errorf("%s does not mention %s", docPath, s)
		}
	}
}
