package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestCompletion_Bash sources the generated script in a real bash and
// asks it to complete command lines as the shell would on Tab.
func TestCompletion_Bash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bash is not installed")
		}
		t.Skip("bash is not installed")
	}
	stdout, _ := runWant(t, []string{"completion", "bash"}, 0, "complete -F _tiercache tiercache", "")
	script := filepath.Join(t.TempDir(), "tiercache.bash")
	if err := os.WriteFile(script, stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string // up to the cursor
		want []string
		not  []string
	}{
		{"tiercache ", []string{"get", "set", "verify", "serve", "completion"}, nil},
		{"tiercache in", []string{"inspect", "invalidate"}, []string{"get"}},
		{"tiercache get --", []string{"--meta", "--url", "--output", "--timeout"}, []string{"--yes"}},
		{"tiercache get --output ", []string{"table", "json"}, nil},
		{"tiercache get k -o j", []string{"json"}, []string{"table"}},
		{"tiercache --version get --url http://x --me", []string{"--meta"}, nil},
		{"tiercache conf ", []string{"check"}, nil},
		{"tiercache conf check --", []string{"--acl", "--strict"}, nil},
		{"tiercache completion ", []string{"bash", "zsh", "fish"}, nil},
		{"tiercache clear -", []string{"--yes", "-y"}, nil},
		{"tiercache set --codec ", []string{"raw", "json", "msgpack"}, nil},
	} {
		t.Run(tc.line, func(t *testing.T) {
			words := strings.Fields(tc.line)
			if strings.HasSuffix(tc.line, " ") {
				words = append(words, "")
			}
			var quoted []string
			for _, w := range words {
				quoted = append(quoted, "'"+w+"'")
			}
			prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
				strconv.Itoa(len(words)-1) + "\n_tiercache\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
			out, err := exec.CommandContext(t.Context(), bash, "--norc", "--noprofile", "-c", prog).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("completions %v lack %q", got, w)
				}
			}
			for _, w := range tc.not {
				if slices.Contains(got, w) {
					t.Errorf("completions %v hold %q", got, w)
				}
			}
		})
	}
}

// TestCompletion_ZshFish checks the other scripts name every command and
// run in their shell when it is installed.
func TestCompletion_ZshFish(t *testing.T) {
	for _, shell := range []string{"zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			stdout, _ := runWant(t, []string{"completion", shell}, 0, "tiercache", "")
			for _, cmd := range commandNames {
				if !strings.Contains(stdout.String(), cmd) {
					t.Errorf("the %s script lacks %q", shell, cmd)
				}
			}
			if shell == "fish" && !strings.Contains(stdout.String(), "complete -c tiercache -n '__fish_seen_subcommand_from get' -l output -s o -x -a 'table json'") {
				t.Errorf("the fish script lacks get's --output:\n%s", stdout)
			}
			if path, err := exec.LookPath(shell); err == nil {
				script := filepath.Join(t.TempDir(), "tiercache."+shell)
				if err := os.WriteFile(script, stdout.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.CommandContext(t.Context(), path, "-n", script).CombinedOutput(); err != nil {
					t.Errorf("%s -n: %v\n%s", shell, err, out)
				}
			}
		})
	}
}
