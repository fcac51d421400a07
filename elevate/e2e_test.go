package elevate_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/elevate"
	"warden/elevate/wire"
)

func init() {
	// The hand-made client: the test binary, re-run as a test user.
	if root := os.Getenv("WDN_ELEVATE_RAW"); root != "" {
		var answers []string
		if a := os.Getenv("WDN_ELEVATE_ANSWERS"); a != "" {
			answers = strings.Split(a, "\n")
		}
		os.Exit(rawClient(root, os.Getenv("WDN_ELEVATE_MSG"), answers))
	}
}

// rawClient sends msg (one JSON message, with fds 0-2) over the socket,
// answers prompts with answers in order, and prints every message it gets
// as a JSON line until the agent ends the conversation.
func rawClient(root, msg string, answers []string) int {
	uc, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: filepath.Join(root, wire.SocketPath), Net: "unixpacket"})
	if err != nil {
		fmt.Println("dial:", err)
		return 3
	}
	raw := wire.Conn{C: uc}
	// sendRaw sends exactly the bytes it is given, with fds, unchecked.
	sendRaw := func(data []byte, fds ...int) error {
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		_, _, err := uc.WriteMsgUnix(data, oob, nil)
		return err
	}
	if msg != "" {
		if err := sendRaw([]byte(msg), 0, 1, 2); err != nil {
			fmt.Println("send:", err)
			return 3
		}
	}
	for {
		m, fds, err := raw.Recv()
		wire.CloseAll(fds)
		if err != nil {
			fmt.Println("recv:", err)
			return 0
		}
		b, _ := json.Marshal(m)
		fmt.Fprintln(os.Stderr, string(b))
		if m.Type == wire.TypePrompt && len(answers) > 0 {
			ans, _ := json.Marshal(wire.Message{V: wire.Version, Type: wire.TypeAnswer, Text: answers[0]})
			answers = answers[1:]
			sendRaw(ans)
		}
		if m.Type == wire.TypeExit || m.Type == wire.TypeError || m.Type == wire.TypeResult {
			return m.Code
		}
	}
}

// rawAs runs the hand-made client as u with one message, answering
// prompts with answers.
func (a *testAgent) rawAs(t *testing.T, u testUser, msg string, answers ...string) (string, int) {
	t.Helper()
	self, _ := os.Executable()
	bin := filepath.Join(filepath.Dir(wardenBin), "raw.test")
	if _, err := os.Stat(bin); err != nil {
		data, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := u.as(bin, "-test.run=^$")
	cmd.Env = append(cmd.Env, "WDN_ELEVATE_RAW="+a.root, "WDN_ELEVATE_MSG="+msg,
		"WDN_ELEVATE_ANSWERS="+strings.Join(answers, "\n"))
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return string(out), code
}

func TestElevateAllowDenyMonitor(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "a")
	a.policy(t, "el-id", `{"name": "id as root", "type": "PrivilegeElevation", "status": "enforce", "priority": 60,
		"controls": ["allow"], "filters": {"users": ["wdn-elevate-a"], "applications": [{"path": "/usr/bin/id"}]}}`)
	a.policy(t, "el-no-whoami", `{"name": "no whoami", "type": "PrivilegeElevation", "status": "enforce", "priority": 60,
		"controls": ["deny"], "filters": {"users": ["*"], "applications": [{"path": "/usr/bin/whoami"}]}}`)
	a.policy(t, "el-watch-uname", `{"name": "watch uname", "type": "PrivilegeElevation", "status": "monitor", "priority": 60,
		"controls": ["deny"], "filters": {"users": ["*"], "applications": [{"path": "/usr/bin/uname"}]}}`)

	out, errs, code := a.warden(t, u, "", "elevate", "--", "/usr/bin/id", "-u")
	if code != 0 || out != "0\n" {
		t.Fatalf("elevate id -u: code %d, stdout %q, stderr %q; want 0 and \"0\"", code, out, errs)
	}
	// A bare name is looked up on the secure path, not the caller's PATH.
	if out, errs, code := a.warden(t, u, "", "elevate", "id", "-un"); code != 0 || out != "root\n" {
		t.Fatalf("elevate id -un: code %d, stdout %q, stderr %q", code, out, errs)
	}
	out, errs, code = a.warden(t, u, "", "elevate", "--", "/usr/bin/whoami")
	if code != 1 || out != "" || !strings.Contains(errs, "el-no-whoami") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("elevate whoami (denied): code %d, stdout %q, stderr %q; want 1 and one line naming the policy", code, out, errs)
	}
	if _, errs, code := a.warden(t, u, "", "elevate", "--", "/usr/bin/uptime"); code != 1 || !strings.Contains(errs, "denied") {
		t.Fatalf("elevate of a program no policy names: code %d, stderr %q; want 1", code, errs)
	}
	out, errs, code = a.warden(t, u, "", "elevate", "--", "/usr/bin/uname", "-s")
	if code != 0 || out != "Linux\n" {
		t.Fatalf("elevate uname under monitor: code %d, stdout %q, stderr %q", code, out, errs)
	}
	a.waitEvent(t, audit.PolicyEvaluation, func(e audit.Event) bool {
		return e.Evaluation != nil && e.Evaluation.Policy == "el-watch-uname" && e.Evaluation.Decision == "deny" &&
			e.Evaluation.Effective == "allow" && e.UserInfo != nil && e.UserInfo.User == u.Name
	})
	started := a.waitEvent(t, audit.ElevationStarted, func(e audit.Event) bool {
		return e.TargetInfo != nil && e.TargetInfo.Path == "/usr/bin/id"
	})
	// The evaluation that allowed it is stored with it, right before it.
	a.waitEvent(t, audit.PolicyEvaluation, func(e audit.Event) bool {
		return e.Seq == started.Seq-1 && e.Evaluation != nil && e.Evaluation.Policy == "el-id" && e.Evaluation.Effective == "allow"
	})
	d := started.Details
	if started.UserInfo.User != u.Name || d["uid"] != float64(u.UID) || d["pid"] == nil || d["cwd"] != "/" ||
		d["policy"] != "el-id" || started.TargetInfo.Hash == "" || fmt.Sprint(d["argv"]) != "[/usr/bin/id -u]" {
		t.Fatalf("ELEVATION_STARTED = %+v %+v %+v", started.UserInfo, started.TargetInfo, d)
	}
	exited := a.waitEvent(t, audit.ElevationExited, func(e audit.Event) bool { return e.Details["pid"] == d["pid"] })
	if exited.Details["exitCode"] != float64(0) || exited.Details["durationMs"] == nil {
		t.Fatalf("ELEVATION_EXITED details = %v", exited.Details)
	}
	for _, e := range a.events(t, audit.ElevationStarted) {
		if e.TargetInfo.Path == "/usr/bin/whoami" {
			t.Fatalf("a denied command was started: %+v", e)
		}
	}
}

func TestEnvironmentIsReset(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "env")
	a.policy(t, "el-env", `{"name": "env", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow"], "filters": {"users": ["wdn-elevate-env"], "applications": [{"path": "/usr/bin/env"}]}}`)
	cmd := u.as(wardenBin, "--root", a.root, "elevate", "--", "env", "-0")
	cmd.Env = append(cmd.Env, "SUDO_COMMAND=/bin/true", "LD_PRELOAD=/tmp/evil.so", "LD_LIBRARY_PATH=/tmp", "IFS=x", "LC_ALL=C", "LANG=../../evil",
		"PATH=/tmp/evil:/usr/bin", "BASH_ENV=/tmp/x", "SUDO_USER=root")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("elevate env: %v", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	for k := range env {
		if strings.HasPrefix(k, "LD_") || k == "IFS" || k == "BASH_ENV" || k == "LANG" {
			t.Errorf("%s reached the command: %q", k, env[k])
		}
	}
	want := map[string]string{"PATH": elevate.SecurePath, "HOME": "/root", "USER": "root", "LOGNAME": "root",
		"SUDO_USER": u.Name, "SUDO_UID": fmt.Sprint(u.UID), "SUDO_GID": fmt.Sprint(u.GID), "LC_ALL": "C", "TERM": "dumb",
		"SUDO_COMMAND": "/usr/bin/env -0"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q (env: %v)", k, env[k], v, env)
		}
	}
}

// rootOnlyDir is a fresh folder only root can write, outside /tmp (which
// anyone may write to, so nothing below it can be elevated).
func rootOnlyDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/opt", "wdn-elevate-")
	if err != nil {
		t.Skipf("no root-only folder for test programs: %v", err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestReplaceableExecutablesAreRefused(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "exe")
	dir := rootOnlyDir(t)
	script := "#!/bin/sh\necho ran as $(id -u)\n"
	ok := filepath.Join(dir, "ok")
	os.WriteFile(ok, []byte(script), 0o755)
	groupW := filepath.Join(dir, "groupw")
	os.WriteFile(groupW, []byte(script), 0o755)
	os.Chmod(groupW, 0o775)
	userDir := filepath.Join(dir, "user")
	os.Mkdir(userDir, 0o755)
	os.Chown(userDir, int(u.UID), int(u.GID))
	inUser := filepath.Join(userDir, "prog")
	os.WriteFile(inUser, []byte(script), 0o755)
	owned := filepath.Join(dir, "owned")
	os.WriteFile(owned, []byte(script), 0o755)
	os.Chown(owned, int(u.UID), int(u.GID))
	link := filepath.Join(userDir, "link")
	os.Symlink(ok, link)
	os.Lchown(link, int(u.UID), int(u.GID))
	tmpProg := filepath.Join(openDir(t), "prog")
	os.WriteFile(tmpProg, []byte(script), 0o755)
	a.policy(t, "el-all", fmt.Sprintf(`{"name": "anything in the test folder", "type": "PrivilegeElevation",
		"status": "enforce", "controls": ["allow"], "filters": {"users": ["wdn-elevate-exe"],
		"applications": [{"path": "%s/*"}, {"path": "/tmp/*"}]}}`, dir))

	if out, errs, code := a.warden(t, u, "", "elevate", "--", ok); code != 0 || out != "ran as 0\n" {
		t.Fatalf("root-owned program: code %d, stdout %q, stderr %q", code, out, errs)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"group-writable file", groupW, "writable by group or others"},
		{"file owned by the user", owned, fmt.Sprintf("owned by uid %d", u.UID)},
		{"folder owned by the user", inUser, fmt.Sprintf("owned by uid %d", u.UID)},
		{"symlink in a user's folder", link, fmt.Sprintf("owned by uid %d", u.UID)},
		{"under /tmp", tmpProg, "writable by group or others"},
	} {
		out, errs, code := a.warden(t, u, "", "elevate", "--", tc.path)
		if code != 1 || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: code %d, stdout %q, stderr %q; want 1 and %q", tc.name, code, out, errs, tc.want)
		}
	}
	a.waitEvent(t, audit.AuthorizationFailed, func(e audit.Event) bool {
		return e.UserInfo != nil && e.UserInfo.User == u.Name && strings.Contains(fmt.Sprint(e.Details["reason"]), "replaced")
	})
}

func TestHandMadeClientCannotClaimAnotherUser(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "raw")
	a.policy(t, "el-root-only", `{"name": "only root may", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow"], "filters": {"users": ["root"], "groups": ["root"], "applications": [{"path": "/usr/bin/id"}]}}`)
	for _, msg := range []string{
		`{"v":1,"type":"elevate","argv":["/usr/bin/id","-u"],"user":"root","groups":["root"]}`,
		`{"v":1,"type":"elevate","argv":["/usr/bin/id","-u"],"uid":0}`,
		`{"v":1,"type":"elevate","argv":["/usr/bin/id","-u"],"env":["USER=root","SUDO_USER=root","LOGNAME=root"]}`,
		`{"v":2,"type":"elevate","argv":["/usr/bin/id","-u"]}`,
	} {
		out, code := a.rawAs(t, u, msg)
		if code == 0 || strings.Contains(out, `"type":"started"`) {
			t.Errorf("hand-made %s: code %d, out %s; want a refusal", msg, code, out)
		}
	}
	ev := a.waitEvent(t, audit.PolicyEvaluation, func(e audit.Event) bool {
		return e.TargetInfo != nil && e.TargetInfo.Path == "/usr/bin/id" && e.UserInfo.User != "wdn-probe"
	})
	if ev.UserInfo.User != u.Name || ev.Evaluation.Effective != "deny" {
		t.Fatalf("evaluation named %+v, decided %+v; want %s, deny", ev.UserInfo, ev.Evaluation, u.Name)
	}
	a.waitEvent(t, audit.AuthorizationFailed, func(e audit.Event) bool {
		return e.UserInfo != nil && e.UserInfo.User == u.Name && strings.Contains(fmt.Sprint(e.Details["reason"]), "unknown field")
	})
}

func TestExitCodesComeBack(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "exit")
	a.policy(t, "el-sh", `{"name": "sh", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow"], "filters": {"users": ["wdn-elevate-exit"], "applications": [{"path": "/usr/bin/dash"}]}}`)
	for _, tc := range []struct {
		script string
		want   int
	}{{"exit 7", 7}, {"kill -TERM $$", 128 + 15}, {"cat; exit 0", 0}} {
		if _, errs, code := a.warden(t, u, "in", "elevate", "--", "/bin/sh", "-c", tc.script); code != tc.want {
			t.Errorf("sh -c %q: exit %d, want %d (stderr %q)", tc.script, code, tc.want, errs)
		}
	}
	// The caller's stdin is the command's.
	if out, _, code := a.warden(t, u, "hello from the caller\n", "elevate", "--", "/bin/sh", "-c", "cat"); code != 0 || out != "hello from the caller\n" {
		t.Fatalf("stdin: code %d, out %q", code, out)
	}
}

func TestKillingTheClientHangsUpTheCommand(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "kill")
	a.policy(t, "el-sleep", `{"name": "sleep", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow"], "filters": {"users": ["wdn-elevate-kill"], "applications": [{"path": "/usr/bin/sleep"}]}}`)
	cmd := u.as(wardenBin, "--root", a.root, "elevate", "--", "/usr/bin/sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ev := a.waitEvent(t, audit.ElevationStarted, func(e audit.Event) bool { return e.TargetInfo.Path == "/usr/bin/sleep" })
	pid := int(ev.Details["pid"].(float64))
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("command pid %d not running: %v", pid, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	exited := a.waitEvent(t, audit.ElevationExited, func(e audit.Event) bool { return e.Details["pid"] == ev.Details["pid"] })
	if exited.Details["hangup"] != true || exited.Details["signal"] != float64(syscall.SIGHUP) {
		t.Fatalf("ELEVATION_EXITED = %v; want a hangup by SIGHUP", exited.Details)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("command %d still alive after its client was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentStopHangsUpCommands: a command still running when the agent
// stops is hung up, and the agent still stops within DESIGN.md's 5 s even
// when the command ignores SIGHUP.
func TestAgentStopHangsUpCommands(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "stop")
	a.policy(t, "el-stop", `{"name": "sh", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow"], "filters": {"users": ["wdn-elevate-stop"], "applications": [{"path": "/usr/bin/dash"}]}}`)
	cmd := u.as(wardenBin, "--root", a.root, "elevate", "--", "/bin/sh", "-c", "trap '' HUP; sleep 300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	ev := a.waitEvent(t, audit.ElevationStarted, func(e audit.Event) bool { return e.UserInfo.User == u.Name })
	pid := int(ev.Details["pid"].(float64))
	start := time.Now()
	a.stop()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("agent stop took %s with a command running", took)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("command %d survived the agent's stop", pid)
	}
}

// The front (installed as warden) handles `warden elevate` itself and
// hands every other line to warden-core: both must give the same answers,
// exit codes and messages for the same command line.
func TestFrontAndCoreAgree(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "front")
	a.policy(t, "fr-id", `{"name": "id as root", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow"], "filters": {"users": ["wdn-elevate-front"], "applications": [{"path": "/usr/bin/id"}]}}`)
	core := filepath.Join(filepath.Dir(wardenBin), "warden-core")
	for _, args := range [][]string{
		{"elevate", "--", "/usr/bin/id", "-u"},
		{"elevate", "/usr/bin/id", "-un"},
		{"elevate", "--reason=why", "--no-wait", "/usr/bin/id", "-u"},
		{"elevate", "--reason", "--", "/usr/bin/id", "-u"}, // "--" is the reason's value, as for cobra
		{"elevate", "--", "/usr/bin/whoami"},
		{"elevate", "--", "./id"},
		{"elevate"},
		{"elevate", "--bogus", "--", "/usr/bin/id"},
		{"elevate", "--no-wait=false", "/usr/bin/id"},
	} {
		fo, fe, fc := a.run(t, wardenBin, u, "", args...)
		co, ce, cc := a.run(t, core, u, "", args...)
		if fo != co || fe != ce || fc != cc {
			t.Errorf("warden %q:\n front: %d %q %q\n core:  %d %q %q", args, fc, fo, fe, cc, co, ce)
		}
	}
	// No agent under the root: both say so the same way, exit 3.
	none := t.TempDir()
	fo, ferr := exec.Command(wardenBin, "--root", none, "elevate", "--", "/usr/bin/id").CombinedOutput()
	co, cerr := exec.Command(core, "--root", none, "elevate", "--", "/usr/bin/id").CombinedOutput()
	if string(fo) != string(co) || fmt.Sprint(ferr) != fmt.Sprint(cerr) || !strings.Contains(string(fo), "no agent reachable") {
		t.Errorf("no agent: front %q (%v), core %q (%v)", fo, ferr, co, cerr)
	}
}

// Signals the caller's terminal sends to `warden elevate` reach the command
// (its process group), and the command's own exit code comes back.
func TestSignalsReachTheCommand(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "sig")
	a.policy(t, "el-sig", `{"name": "sh", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow"], "filters": {"users": ["wdn-elevate-sig"], "applications": [{"path": "/usr/bin/dash"}]}}`)
	for _, tc := range []struct {
		sig  syscall.Signal
		want string
		code int
	}{{syscall.SIGINT, "got INT", 7}, {syscall.SIGTERM, "got TERM", 9}, {syscall.SIGQUIT, "got QUIT", 11}} {
		cmd := u.as(wardenBin, "--root", a.root, "elevate", "--", "/bin/sh", "-c",
			`trap "echo got INT; exit 7" INT; trap "echo got TERM; exit 9" TERM; trap "echo got QUIT; exit 11" QUIT; echo ready; while :; do sleep 0.05; done`)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _ := out.Read(buf)
		if string(buf[:n]) != "ready\n" {
			t.Fatalf("command said %q; want ready", buf[:n])
		}
		// The client reads its "started" message about when the command
		// prints; before it, Ctrl-C means leaving (exit 130), not forwarding.
		time.Sleep(time.Second)
		cmd.Process.Signal(tc.sig)
		rest, _ := io.ReadAll(out)
		err = cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if strings.TrimSpace(string(rest)) != tc.want || code != tc.code {
			t.Fatalf("%v to the client: command printed %q, client exited %d; want %q and %d", tc.sig, rest, code, tc.want, tc.code)
		}
	}
}
