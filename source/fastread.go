package source

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"path/filepath"
)

// ReadBundleBytes is ReadBundle of a bundle held in memory. A plain bundle
// (the USTAR entries `warden bundle build` and most tar tools write) is
// read by readBundleFast, without archive/tar, whose header parsing was
// most of what a 10,000-file bundle costs to read; anything else, and
// every refusal, is ReadBundle's. FuzzFastReaderAgrees holds the two to the
// same answer.
func ReadBundleBytes(data []byte) (*Bundle, error) {
	if b, ok := readBundleFast(data); ok {
		return b, nil
	}
	return ReadBundle(bytes.NewReader(data))
}

// tar header layout (POSIX USTAR).
const (
	blockSize  = 512
	offSize    = 124
	offChksum  = 148
	offType    = 156
	offMagic   = 257
	offPrefix  = 345
	magicUstar = "ustar\x0000"
)

// numericFields are the header fields archive/tar parses as numbers
// (mode, uid, gid, size, mtime, devmajor, devminor): offset and length.
var numericFields = [][2]int{{100, 8}, {108, 8}, {116, 8}, {124, 12}, {136, 12}, {329, 8}, {337, 8}}

// readBundleFast reads data as ReadBundle would, answering only for what it
// is sure of: one gzip stream within MaxUncompressed, USTAR headers with a
// right checksum, plain octal numbers and no prefix, regular files ('0')
// and folders ('5'), and everything ReadBundle then checks (names, kinds,
// limits, duplicates) passing. ok is false for anything else, including
// every bundle ReadBundle refuses: the caller then reads it with ReadBundle,
// for its answer and its error. File contents are slices of one buffer.
func readBundleFast(data []byte) (b *Bundle, ok bool) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, false
	}
	var out bytes.Buffer
	// The gzip trailer's length of the data (modulo 2^32) sizes the buffer
	// at once; only a hint, the stream says how long it really is. Deflate
	// expands at most about 1,032 times, so a larger claim is not believed.
	hint := 16 * len(data)
	if len(data) >= 4 {
		if isize := int(binary.LittleEndian.Uint32(data[len(data)-4:])); isize <= 1032*len(data) {
			hint = max(hint, isize)
		}
	}
	out.Grow(min(MaxUncompressed+1, hint+blockSize))
	n, err := io.Copy(&out, io.LimitReader(zr, MaxUncompressed+1))
	if err != nil || n > MaxUncompressed {
		return nil, false
	}
	buf := out.Bytes()
	b = &Bundle{Files: map[string][]byte{}}
	files, folders := 0, 0
	for off := 0; off < len(buf); {
		if len(buf)-off < blockSize {
			return nil, false
		}
		hdr := buf[off : off+blockSize]
		if allZero(hdr) {
			// The end: a second zero block, or nothing after the first.
			rest := buf[off+blockSize:]
			if len(rest) == 0 || len(rest) >= blockSize && allZero(rest[:blockSize]) {
				return b, true
			}
			return nil, false
		}
		size, ok := plainHeader(hdr)
		if !ok {
			return nil, false
		}
		name := cstring(hdr[:100])
		if !filepath.IsLocal(name) {
			return nil, false
		}
		clean, err := cleanName(name)
		if err != nil {
			return nil, false
		}
		off += blockSize
		if hdr[offType] == '5' {
			if folders++; folders > MaxFolders {
				return nil, false
			}
			continue // a folder has no data, whatever its size says
		}
		if clean == "" {
			return nil, false
		}
		limit := int64(MaxEntrySize)
		if clean == ManifestFile {
			limit = MaxManifestSize
		}
		envelope := clean == ManifestFile || clean == SignatureFile || clean == SignerFile
		if !envelope {
			files++
		}
		end := int64(off) + size
		padded := end + (-size & (blockSize - 1))
		if size > limit || files > MaxFiles || padded > int64(len(buf)) {
			return nil, false
		}
		if b.put(clean, buf[off:end:end]) != nil {
			return nil, false
		}
		off = int(padded)
	}
	return b, true // the stream ended at a header boundary, as archive/tar allows
}

// plainHeader checks a header block is one readBundleFast reads: USTAR
// magic and version, a right checksum, type '0' or '5', octal numbers,
// no prefix (nor anything else after the device numbers). It returns the
// size field.
func plainHeader(hdr []byte) (size int64, ok bool) {
	if string(hdr[offMagic:offMagic+8]) != magicUstar || !allZero(hdr[offPrefix:]) {
		return 0, false
	}
	if t := hdr[offType]; t != '0' && t != '5' {
		return 0, false
	}
	sum, ok := octal(hdr[offChksum : offChksum+8])
	if !ok || sum != checksum(hdr) {
		return 0, false
	}
	for _, f := range numericFields {
		if _, ok := octal(hdr[f[0] : f[0]+f[1]]); !ok {
			return 0, false
		}
	}
	size, _ = octal(hdr[offSize : offSize+12])
	return size, true
}

// octal parses a numeric field as archive/tar does for plain octal (spaces
// and NULs trimmed on both sides, then octal digits); base-256 and
// anything unusual are not ok.
func octal(f []byte) (int64, bool) {
	i, j := 0, len(f)
	for i < j && (f[i] == ' ' || f[i] == 0) {
		i++
	}
	for j > i && (f[j-1] == ' ' || f[j-1] == 0) {
		j--
	}
	if j-i > 20 { // more than 60 bits
		return 0, false
	}
	var x int64
	for _, c := range f[i:j] {
		if c < '0' || c > '7' {
			return 0, false
		}
		x = x<<3 | int64(c-'0')
	}
	return x, true
}

// checksum is the unsigned sum of the header with its checksum field read
// as spaces.
func checksum(hdr []byte) int64 {
	// Eight bytes at a time, summed in four 16-bit lanes (64 words of at
	// most 2*255 per lane cannot overflow one).
	const lanes = 0x00FF00FF00FF00FF
	var acc uint64
	for i := 0; i < blockSize; i += 8 {
		x := binary.LittleEndian.Uint64(hdr[i:])
		acc += x&lanes + x>>8&lanes
	}
	s := int64(acc&0xFFFF + acc>>16&0xFFFF + acc>>32&0xFFFF + acc>>48)
	for _, c := range hdr[offChksum : offChksum+8] {
		s += ' ' - int64(c)
	}
	return s
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
