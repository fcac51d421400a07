package policy

import (
	"regexp"
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	carol := vars{user: "carol", machine: "ws-17"}
	root := vars{user: "root", machine: "srv-1"}
	cases := []struct {
		name    string
		pattern string
		path    bool
		v       vars
		s       string
		want    bool
	}{
		{"exact", "/usr/bin/nc", true, carol, "/usr/bin/nc", true},
		{"exact is not a prefix", "/usr/bin/nc", true, carol, "/usr/bin/ncat", false},
		{"case is exact", "/usr/bin/NC", true, carol, "/usr/bin/nc", false},
		{"star suffix", "/usr/bin/nc*", true, carol, "/usr/bin/ncat", true},
		{"star matches empty", "/usr/bin/nc*", true, carol, "/usr/bin/nc", true},
		{"star stops at slash", "/usr/bin/nc*", true, carol, "/usr/bin/nc/evil", false},
		{"star in the middle", "/opt/*/bin/tool", true, carol, "/opt/acme/bin/tool", true},
		{"star is one element", "/opt/*/bin/tool", true, carol, "/opt/a/b/bin/tool", false},
		{"question mark", "/usr/bin/apt?", true, carol, "/usr/bin/apt2", true},
		{"question mark needs one", "/usr/bin/apt?", true, carol, "/usr/bin/apt", false},
		{"question mark not slash", "/usr/bin?x", true, carol, "/usr/bin/x", false},
		{"question mark one rune", "/tmp/caf?", true, carol, "/tmp/café", true},
		{"double star crosses slashes", "/opt/**", true, carol, "/opt/a/b/c", true},
		{"double star needs the slash", "/opt/**", true, carol, "/opt", false},
		{"double star in element", "/opt/**.sh", true, carol, "/opt/a/b/run.sh", true},
		{"dirs zero elements", "/usr/**/bin/nc", true, carol, "/usr/bin/nc", true},
		{"dirs two elements", "/usr/**/bin/nc", true, carol, "/usr/local/x/bin/nc", true},
		{"dirs whole elements only", "/usr/**/bin/nc", true, carol, "/usr/xbin/nc", false},
		{"leading dirs", "**/nc", true, carol, "/usr/bin/nc", true},
		{"many stars", "/a*b*c*d*e*f*g*h", true, carol, "/aXbXcXdXeXfXgXh", true},
		{"many stars fail fast", "/a*a*a*a*a*a*a*a*b", true, carol, "/" + strings.Repeat("a", 3000), false},
		{"user variable", "/home/${USER}/bin/*", true, carol, "/home/carol/bin/tool", true},
		{"user variable other user", "/home/${USER}/bin/*", true, carol, "/home/dave/bin/tool", false},
		{"home variable", "${HOME}/Downloads/*", true, carol, "/home/carol/Downloads/x.deb", true},
		{"home of root", "${HOME}/*", true, root, "/root/.bashrc", true},
		{"home of root is not /home/root", "${HOME}/*", true, root, "/home/root/.bashrc", false},
		{"machine variable", "${MACHINE}-*", false, carol, "ws-17-admin", true},
		{"variable is literal", "/home/${USER}", true, vars{user: "*"}, "/home/carol", false},
		{"dollar without brace is literal", "/opt/$x", true, carol, "/opt/$x", true},
		{"text star crosses slashes", "apt-get install *", false, carol, "apt-get install /tmp/x.deb", true},
		{"text question crosses slash", "a?b", false, carol, "a/b", true},
		{"text exact", "developers", false, carol, "developers", true},
		{"text case", "Developers", false, carol, "developers", false},
		{"lone star matches empty", "*", false, carol, "", true},
		{"long pattern", "/" + strings.Repeat("x", 300) + "*", true, carol, "/" + strings.Repeat("x", 300) + "y", true},
		{"long pattern general", "/" + strings.Repeat("x?", 150), true, carol, "/" + strings.Repeat("xy", 150), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, err := compileGlob(tc.pattern, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.match(tc.s, tc.v); got != tc.want {
				t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
			}
			if want := referenceMatch(t, tc.pattern, tc.path, tc.v, tc.s); want != tc.want {
				t.Errorf("reference disagrees with the table for %q on %q", tc.pattern, tc.s)
			}
		})
	}
}

func TestGlobErrors(t *testing.T) {
	for _, p := range []string{"/home/${USR}/x", "${HOME", "${}", "/a/${user}"} {
		if _, err := compileGlob(p, true); err == nil {
			t.Errorf("compileGlob(%q) succeeded, want an error", p)
		}
	}
}

// referenceMatch is the glob syntax restated as a regular expression: the
// specification the automaton is checked against (here and in FuzzGlob).
func referenceMatch(t testing.TB, pattern string, path bool, v vars, s string) bool {
	t.Helper()
	var re strings.Builder
	re.WriteString(`(?s)^`)
	for i := 0; i < len(pattern); {
		c := pattern[i]
		switch {
		case c == '*':
			n := len(pattern[i:]) - len(strings.TrimLeft(pattern[i:], "*"))
			switch {
			case !path || (n >= 2 && !(i+n < len(pattern) && pattern[i+n] == '/' && (i == 0 || pattern[i-1] == '/'))):
				re.WriteString(`.*`)
			case n == 1:
				re.WriteString(`[^/]*`)
			default:
				re.WriteString(`(?:.*/)?`)
				n++
			}
			i += n
		case c == '?':
			if path {
				re.WriteString(`[^/]`)
			} else {
				re.WriteString(`.`)
			}
			i++
		case strings.HasPrefix(pattern[i:], "${USER}"):
			re.WriteString(regexp.QuoteMeta(v.user))
			i += len("${USER}")
		case strings.HasPrefix(pattern[i:], "${MACHINE}"):
			re.WriteString(regexp.QuoteMeta(v.machine))
			i += len("${MACHINE}")
		case strings.HasPrefix(pattern[i:], "${HOME}"):
			home := "/home/" + v.user
			if v.user == "root" {
				home = "/root"
			}
			re.WriteString(regexp.QuoteMeta(home))
			i += len("${HOME}")
		default:
			re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
			i++
		}
	}
	re.WriteString(`$`)
	return regexp.MustCompile(re.String()).MatchString(s)
}
