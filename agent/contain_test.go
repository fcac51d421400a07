package agent

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"warden/schema"
	"warden/state"
)

// Descriptors the agent inherited (the issue saw fds 10 and 251 in a
// plugin) do not reach the processes it starts: a job task lists its own
// /proc/PID/fd and finds only stdin, stdout and stderr.
func TestInheritedFDsDoNotReachChildren(t *testing.T) {
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, fd := range []int{10, 251} {
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil { // without O_CLOEXEC, as inherited
			t.Fatal(err)
		}
		defer unix.Close(fd)
	}
	root := t.TempDir()
	a, info := startAgent(t, root)
	doc, err := schema.Validate("jobs/fds.json", []byte(`{"kind": "Job", "id": "fds", "spec": {"trigger": {},
	  "tasks": [{"command": "/bin/ls", "args": ["/proc/self/fd"]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.ApplyGeneration(state.Apply{Source: "test", Docs: []*schema.Document{doc}}); err != nil {
		t.Fatal(err)
	}
	c := adminClient(t, root)
	base := "https://" + info.API + "/api/v1/jobs/fds"
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := do(t, c, "POST", base+"/run", "")
		if code/100 == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run = %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var out string
	for {
		_, body := do(t, c, "GET", base+"/runs", "")
		var runs struct {
			Runs []struct {
				State string `json:"state"`
				Tasks []struct {
					Output string `json:"output"`
				} `json:"tasks"`
			} `json:"runs"`
		}
		json.Unmarshal([]byte(body), &runs)
		if len(runs.Runs) > 0 && runs.Runs[0].State == "succeeded" && len(runs.Runs[0].Tasks) == 1 {
			out = runs.Runs[0].Tasks[0].Output
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished run: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ls lists its own fds: 0, 1, 2 and the one it reads the folder with.
	fds := strings.Fields(out)
	if len(fds) > 4 {
		t.Errorf("the task holds descriptors %v; want 0 1 2 and ls's own (an inherited one leaked)", fds)
	}
	for _, leaked := range []string{"10", "251"} {
		for _, fd := range fds {
			if fd == leaked {
				t.Errorf("fd %s inherited by the agent reached the task (fds %v)", leaked, fds)
			}
		}
	}
}
