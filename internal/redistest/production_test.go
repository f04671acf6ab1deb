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
	} else if got := v.([]any)[1]; got != "no" {
		t.Errorf("activedefrag %v, want redis-production.conf's no", got)
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
