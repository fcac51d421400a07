package doctor

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func itoa(n int) string { return strconv.Itoa(n) }

// checkRoot: the agent must run as root (the hardening page's service
// account). Read from /proc/PID/status when the agent runs.
func checkRoot(e *Env) Result {
	if e.AgentPID == 0 {
		if os.Geteuid() != 0 {
			return warn("agent not running, and doctor is not root: the root-owned files cannot all be checked", "run `sudo warden doctor`")
		}
		return skip("agent not running")
	}
	uid, err := procUID(filepath.Join(e.Proc, itoa(e.AgentPID), "status"))
	if err != nil {
		return warn(fmt.Sprintf("cannot read the agent's uid: %v", err), "run `sudo warden doctor`")
	}
	if uid != 0 {
		return fail(fmt.Sprintf("agent (pid %d) runs as uid %d", e.AgentPID, uid), "run the agent as root: `systemctl start warden` (the unit has no User=)")
	}
	return pass(fmt.Sprintf("agent (pid %d) runs as root", e.AgentPID))
}

// procUID returns the effective uid in a /proc/PID/status file.
func procUID(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			fs := strings.Fields(rest)
			if len(fs) >= 2 {
				return strconv.Atoi(fs[1])
			}
		}
	}
	return 0, fmt.Errorf("%s: no Uid line", path)
}

// checkService: where systemd runs, warden.service is active and enabled.
func checkService(e *Env) Result {
	if !*e.Systemd {
		return skip("systemd is not running here")
	}
	active, _ := e.Systemctl("is-active", e.Unit)
	enabled, _ := e.Systemctl("is-enabled", e.Unit)
	active, enabled = strings.TrimSpace(active), strings.TrimSpace(enabled)
	switch {
	case active != "active":
		return fail(fmt.Sprintf("%s is %s", e.Unit, active), "systemctl enable --now "+e.Unit)
	case enabled != "enabled":
		return warn(fmt.Sprintf("%s is active but %s: it will not start at boot", e.Unit, enabled), "systemctl enable "+e.Unit)
	}
	return pass(e.Unit + " is active and enabled")
}

func systemctl(args ...string) (string, error) {
	out, err := exec.Command("systemctl", args...).Output()
	return string(out), err
}

// checkClock: grants expire and TOTP codes are checked by time, so the
// clock must be synchronized (the kernel's adjtimex status).
func checkClock(e *Env) Result {
	unsynced, err := e.Unsynced()
	if err != nil {
		return warn(fmt.Sprintf("cannot read the clock's state: %v", err), "enable time synchronization: `timedatectl set-ntp true`")
	}
	if unsynced {
		return warn("the system clock is not synchronized (grant expiry and TOTP depend on it)", "enable time synchronization: `timedatectl set-ntp true` (or chrony)")
	}
	return pass("the system clock is synchronized")
}

func clockUnsynced() (bool, error) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false, err
	}
	return state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0, nil
}
