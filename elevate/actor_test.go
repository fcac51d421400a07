package elevate

import "testing"

func TestParseStatus(t *testing.T) {
	status := "Name:\tbash\nUid:\t1000\t1001\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 1000 \n"
	uid, groups, err := parseStatus([]byte(status))
	if err != nil || uid != 1001 || len(groups) != 3 || groups[1] != 27 {
		t.Fatalf("parseStatus = %d %v %v; want euid 1001 and groups [4 27 1000]", uid, groups, err)
	}
	if _, _, err := parseStatus([]byte("Uid:\t1\t1\t1\t1\n")); err == nil {
		t.Fatal("a status without Groups was accepted")
	}
	if _, _, err := parseStatus([]byte("Uid:\t1\t1\t1\t1\nGroups:\t4 x\n")); err == nil {
		t.Fatal("a bad Groups line was accepted")
	}
}
