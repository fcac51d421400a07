// Command light is the smallest client of the user socket, for
// bench/elevate's inner figure: it asks the agent to run /bin/true with its
// stdio and waits for the end, linking nothing but the net package and
// x/sys. The gap between it and `warden elevate` is the warden binary's
// start-up; the gap between it and sudo is the agent's side.
//
//	go build -o /tmp/light ./bench/elevate/light
//	sudo go run ./bench/elevate --warden bin/warden --also "/tmp/light {root}/run/warden.sock"
package main

import (
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: os.Args[1], Net: "unixpacket"})
	if err != nil {
		os.Exit(3)
	}
	msg := []byte(`{"v":1,"type":"elevate","argv":["/bin/true"]}`)
	if _, _, err := c.WriteMsgUnix(msg, unix.UnixRights(0, 1, 2), nil); err != nil {
		os.Exit(3)
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, _, _, err := c.ReadMsgUnix(buf, nil)
		if err != nil || n == 0 {
			os.Exit(1)
		}
		if s := string(buf[:n]); strings.Contains(s, `"type":"exit"`) {
			os.Exit(0)
		} else if strings.Contains(s, `"type":"error"`) {
			os.Exit(1)
		}
	}
}
