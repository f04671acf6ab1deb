package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func TestRenderACL(t *testing.T) {
	t.Parallel()
	tmpl := "# users\nuser a on " + aclPlaceholder + " ~a:* +get\nuser b on " + aclPlaceholder + " +ping\n"
	got, err := renderACL(tmpl, map[string]string{"a": "secret"})
	if err != nil {
		t.Fatal(err)
	}
	// sha256("secret")
	want := "# users\nuser a on #2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b ~a:* +get\nuser b on " + aclPlaceholder + " +ping\n"
	if got != want {
		t.Errorf("renderACL =\n%s\nwant\n%s", got, want)
	}
	if _, err := renderACL(tmpl, map[string]string{"c": "x"}); err == nil {
		t.Error("renderACL of a user the file lacks: no error")
	}
}

func TestWithoutDefrag(t *testing.T) {
	t.Parallel()
	got, err := withoutDefrag("a 1\nactivedefrag yes\nb 2\n")
	if err != nil || got != "a 1\nactivedefrag no\nb 2\n" {
		t.Errorf("withoutDefrag = %q, %v", got, err)
	}
	for _, conf := range []string{"a 1\n", "activedefrag yes\nactivedefrag yes\n", "\nactivedefrag yes\n\nactivedefrag yes\n"} {
		if _, err := withoutDefrag(conf); err == nil {
			t.Errorf("withoutDefrag(%q): no error", conf)
		}
	}
}

// TestProduction checks what the tests that use a Production rely on:
// the tiercache user writes in its namespace and nothing else, the write
// reaches the replica, the helpers' Do is the administrator, and
// ACLDenials reports the refusals.
func TestProduction(t *testing.T) {
	t.Parallel()
	p := NewProduction(t)
	ctx, cancel := context.WithTimeout(context.Background(), doTimeout)
	defer cancel()
	as := func(args ...string) (any, error) { return roundTripAs(ctx, p.Addr, p.Username, p.Password, args) }
	if _, err := as("SET", "tiercache:k", "v"); err != nil {
		t.Fatalf("SET in the namespace as %s: %v", p.Username, err)
	}
	for _, cmd := range [][]string{{"GET", "other:k"}, {"FLUSHALL"}, {"CLIENT", "KILL", "TYPE", "normal"}} {
		if _, err := as(cmd...); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("%v as %s: %v, want NOPERM", cmd, p.Username, err)
		}
	}
	if err := poll(topologyTimeout, "the replica has the key", func() error {
		v, err := p.Replica.Do("GET", "tiercache:k")
		if err == nil && v != "v" {
			return fmt.Errorf("GET tiercache:k = %v", v)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Do is the administrator, who may read any key and the settings.
	if v, err := p.Master.Do("CONFIG", "GET", "activedefrag"); err != nil {
		t.Fatal(err)
	} else if got, want := v.([]any)[1], map[bool]string{true: "no", false: "yes"}[p.NoDefrag]; got != want {
		t.Errorf("activedefrag %v with NoDefrag=%v", got, p.NoDefrag)
	}
	if v, err := p.Master.Do("CONFIG", "GET", "maxmemory"); err != nil || v.([]any)[1] != "2147483648" {
		t.Errorf("maxmemory %v, %v: not redis-production.conf's", v, err)
	}
	denied, err := p.ACLDenials(p.Username)
	if err != nil {
		t.Fatal(err)
	}
	if len(denied) != 3 {
		t.Errorf("ACLDenials(%s) = %q, want the 3 refusals above", p.Username, denied)
	}
	if denied, err := p.ACLDenials(ProductionAdmin); err != nil || len(denied) != 0 {
		t.Errorf("ACLDenials(%s) = %q, %v; want none", ProductionAdmin, denied, err)
	}
}
