// Package rss reads this process's memory figures from /proc/self/status,
// for the benchmarks that report peak resident set size.
package rss

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Field returns the value of one /proc/self/status line: Field("VmHWM:")
// gives "157324 kB".
func Field(name string) (string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			return strings.TrimSpace(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("/proc/self/status has no %s", name)
}

// PeakMB is the process's peak resident set (VmHWM) in MB, 0 if unknown.
func PeakMB() float64 {
	v, err := Field("VmHWM:")
	if err != nil {
		return 0
	}
	kb, _ := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
	return kb / 1024
}
