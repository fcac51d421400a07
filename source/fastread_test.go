package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"reflect"
	"strings"
	"testing"

	"warden/schema"
)

// sameAsReadBundle fails t unless readBundleFast, where it answers, reads
// data exactly as ReadBundle does. It reports whether it answered.
func sameAsReadBundle(t *testing.T, data []byte) bool {
	t.Helper()
	fast, ok := readBundleFast(data)
	if !ok {
		return false
	}
	slow, err := ReadBundle(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("readBundleFast read %d files, ReadBundle refuses: %v", len(fast.Files), err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("readBundleFast and ReadBundle differ:\nfast %v\nslow %v", fast.Paths(), slow.Paths())
	}
	return true
}

func gz(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

func gunzip(t testing.TB, data []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil
	}
	out, _ := io.ReadAll(zr)
	return out
}

// FuzzFastReaderAgrees: whatever readBundleFast answers for, ReadBundle
// answers the same (seeds: the bundles of FuzzReadBundle).
func FuzzFastReaderAgrees(f *testing.F) {
	for _, seed := range corpusSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameAsReadBundle(t, data) })
}

// FuzzFastTarAgrees is FuzzFastReaderAgrees on the tar stream itself
// (gzipped before both read it), where mutations reach the headers.
func FuzzFastTarAgrees(f *testing.F) {
	for _, seed := range corpusSeeds(f) {
		if tarball := gunzip(f, seed); tarball != nil {
			f.Add(tarball)
		}
	}
	f.Fuzz(func(t *testing.T, tarball []byte) { sameAsReadBundle(t, gz(t, tarball)) })
}

// The bundles `warden bundle build` writes are read by the fast reader;
// what it does not know goes to archive/tar, which reads or refuses it as
// before.
func TestReadBundleBytes(t *testing.T) {
	key := newKey(t)
	good := targz(t, craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)))
	tarball := gunzip(t, good)
	withPAX := targz(t, append(craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)),
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "policies/" + strings.Repeat("x", 120) + ".json", Format: tar.FormatPAX}}))
	cases := []struct {
		name     string
		data     []byte
		fast     bool
		wantErr  error
		wantFile string
	}{
		{"built bundle", good, true, nil, "settings.json"},
		{"no end-of-archive blocks", gz(t, tarball[:len(tarball)-1024]), true, nil, "settings.json"},
		{"dotted names and a ./ folder", corpusSeeds(t)[2], true, nil, "settings.json"},
		{"long name (PAX header)", withPAX, false, nil, "policies/" + strings.Repeat("x", 120) + ".json"},
		{"symlink", corpusSeeds(t)[3], false, ErrEntryType, ""},
		{"dot-dot", corpusSeeds(t)[4], false, ErrUnsafePath, ""},
		{"cut in half", good[:len(good)/2], false, ErrTruncated, ""},
		{"header checksum broken", gz(t, flip(tarball, 150)), false, ErrCorrupt, ""},
		{"data cut short", gz(t, tarball[:512+100]), false, ErrTruncated, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameAsReadBundle(t, tc.data); got != tc.fast {
				t.Errorf("fast reader answered: %v, want %v", got, tc.fast)
			}
			b, err := ReadBundleBytes(tc.data)
			switch {
			case tc.wantErr != nil && (err == nil || !strings.Contains(err.Error(), tc.wantErr.Error())):
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && err != nil:
				t.Fatalf("err = %v", err)
			case tc.wantErr == nil && b.Files[tc.wantFile] == nil:
				t.Fatalf("%s not read: %v", tc.wantFile, b.Paths())
			}
		})
	}
}

// flip returns data with the byte at i changed.
func flip(data []byte, i int) []byte {
	out := bytes.Clone(data)
	out[i] ^= 0x01
	return out
}

// BenchmarkReadBundle10000 reads a 10,000-policy bundle with archive/tar
// (ReadBundle) and with the fast reader (ReadBundleBytes).
func BenchmarkReadBundle10000(b *testing.B) {
	data := targz(b, craft(b, newKey(b), schema.Manifest{Version: 1}, manyPolicies(10_000, "read", 0, "")))
	b.Run("archive-tar", func(b *testing.B) {
		for b.Loop() {
			if _, err := ReadBundle(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, ok := readBundleFast(data); !ok {
				b.Fatal("not read by the fast reader")
			}
		}
	})
}

// checksum is the sum archive/tar checks, for any header bytes.
func TestChecksum(t *testing.T) {
	for seed := range 200 {
		hdr := make([]byte, blockSize)
		for i := range hdr {
			hdr[i] = byte(seed*7 + i*i*13 + i>>3)
			if seed%5 == 0 {
				hdr[i] = 0xff
			}
		}
		var want int64
		for i, c := range hdr {
			if i >= offChksum && i < offChksum+8 {
				c = ' '
			}
			want += int64(c)
		}
		if got := checksum(hdr); got != want {
			t.Fatalf("seed %d: checksum %d, want %d", seed, got, want)
		}
	}
}

// A name isPlainName takes is one cleanName (the long way) leaves as it is.
func FuzzPlainNameIsClean(f *testing.F) {
	for _, n := range []string{"policies/a.json", "a", "./a", "a/", "a//b", "a/./b", "a/../b", "/a", "a\\b", "..", ".", "", "a/.b", "a..b/c"} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !isPlainName(name) {
			return
		}
		c, err := cleanNameSlow(name)
		if err != nil || c != name {
			t.Fatalf("%q is plain, but cleanName makes %q, %v of it", name, c, err)
		}
	})
}
