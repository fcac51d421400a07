package source

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
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

// readHashed is ReadBundleBytes that also returns every file of the
// bundle with its SHA-256: the fast reader hashes them on another core as
// it reads them, and returns them in the order of the archive; otherwise
// they are hashed after reading, in path order.
//
// onEnvelope, when not nil, is called once, as soon as the fast reader has
// read manifest.json and manifest.sig (and manifest.pub, if it comes
// before the files, as `warden bundle build` writes them): the signature
// can be checked while the files are read. It is given copies of their
// slices; the caller compares them with the bundle's (sameEnvelope).
func readHashed(data []byte, onEnvelope func(Bundle)) (*Bundle, []hashedFile, error) {
	if b, files, ok := readFast(data, true, onEnvelope); ok {
		return b, files, nil
	}
	b, err := ReadBundle(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	return b, hashAll(b), nil
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
// for its answer and its error.
func readBundleFast(data []byte) (b *Bundle, ok bool) {
	b, _, ok = readFast(data, false, nil)
	return b, ok
}

// readWindow is how much of the tar stream readFast holds at a time: the
// stream is read through it, never held whole (a 10,000-file bundle
// unpacks to about 10 MB, mostly headers and padding; fresh memory of
// that size costs more to fault in than to fill).
const readWindow = 64 << 10

// hashBatch is how many files the reader hands the hasher at a time.
const hashBatch = 128

// readFast is readBundleFast streaming: each file's bytes are copied out
// of the window into a slice of their own. With hash, the files are also
// hashed, on another goroutine, as they are read. onEnvelope: readHashed's.
func readFast(data []byte, hash bool, onEnvelope func(Bundle)) (b *Bundle, hashed []hashedFile, ok bool) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, false
	}
	lr := &io.LimitedReader{R: zr, N: MaxUncompressed + 1}
	br := bufio.NewReaderSize(lr, readWindow)
	// The gzip trailer's length of the data (modulo 2^32) sizes the map;
	// only a hint: about one file per 1 KiB of tar.
	hint := 0
	if len(data) >= 4 {
		hint = min(int(binary.LittleEndian.Uint32(data[len(data)-4:]))/(2*blockSize), MaxFiles)
	}
	b = &Bundle{Files: make(map[string][]byte, hint)}
	var h *hasher
	if hash {
		h = startHasher()
		defer func() {
			if hashed = h.wait(hint); !ok {
				hashed = nil
			}
		}()
	}
	var known headerFields
	files, folders := 0, 0
	for {
		hdr, err := br.Peek(blockSize)
		if len(hdr) < blockSize {
			// The stream ended at a header boundary, as archive/tar allows.
			return b, nil, len(hdr) == 0 && err == io.EOF && lr.N > 0
		}
		if allZero(hdr) {
			// The end: a second zero block, or nothing after the first.
			br.Discard(blockSize)
			rest, err := br.Peek(blockSize)
			if len(rest) == 0 && err == io.EOF {
				return b, nil, lr.N > 0
			}
			if len(rest) < blockSize || !allZero(rest) {
				return nil, nil, false
			}
			// Read to the end of the gzip stream, as ReadBundle does: that
			// checks its CRC, its length and the limit.
			if _, err := io.Copy(io.Discard, br); err != nil || lr.N == 0 {
				return nil, nil, false
			}
			return b, nil, true
		}
		size, ok := known.plainHeader(hdr)
		if !ok {
			return nil, nil, false
		}
		name := cstring(hdr[:100])
		typ := hdr[offType]
		br.Discard(blockSize)
		if !filepath.IsLocal(name) {
			return nil, nil, false
		}
		clean, err := cleanName(name)
		if err != nil {
			return nil, nil, false
		}
		if typ == '5' {
			if folders++; folders > MaxFolders {
				return nil, nil, false
			}
			continue // a folder has no data, whatever its size says
		}
		if clean == "" {
			return nil, nil, false
		}
		limit := int64(MaxEntrySize)
		if clean == ManifestFile {
			limit = MaxManifestSize
		}
		envelope := clean == ManifestFile || clean == SignatureFile || clean == SignerFile
		if !envelope {
			files++
		}
		if size > limit || files > MaxFiles {
			return nil, nil, false
		}
		if !envelope && onEnvelope != nil && b.Manifest != nil && b.Signature != nil {
			onEnvelope(Bundle{Manifest: b.Manifest, Signature: b.Signature, Signer: b.Signer})
			onEnvelope = nil
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, nil, false
		}
		if pad := int(-size & (blockSize - 1)); pad > 0 {
			if n, _ := br.Discard(pad); n != pad {
				return nil, nil, false
			}
		}
		if b.put(clean, body) != nil {
			return nil, nil, false
		}
		if h != nil && !envelope {
			h.add(clean, body)
		}
	}
}

// plainHeader checks a header block is one readBundleFast reads: USTAR
// magic and version, a right checksum, type '0' or '5', octal numbers,
// no prefix (nor anything else after the device numbers). It returns the
// size field.
func plainHeader(hdr []byte) (size int64, ok bool) { return checkHeader(hdr, true) }

// checkHeader is plainHeader, checking the numeric fields other than size
// only when numeric is set.
func checkHeader(hdr []byte, numeric bool) (size int64, ok bool) {
	if string(hdr[offMagic:offMagic+8]) != magicUstar || string(hdr[offPrefix:]) != zeroTail {
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
		if !numeric {
			break
		}
		if _, ok := octal(hdr[f[0] : f[0]+f[1]]); !ok {
			return 0, false
		}
	}
	return octal(hdr[offSize : offSize+12])
}

// headerFields remembers the numeric fields other than size (mode, uid,
// gid, mtime, device numbers) of the last plain header: the entries of
// one archive mostly share them, and fields already parsed need not be
// parsed again.
type headerFields struct {
	ok     bool
	fields [24 + 12 + 16]byte
}

func (k *headerFields) same(hdr []byte) bool {
	return k.ok && string(k.fields[:24]) == string(hdr[100:124]) &&
		string(k.fields[24:36]) == string(hdr[136:148]) && string(k.fields[36:]) == string(hdr[329:345])
}

// plainHeader is plainHeader(hdr), parsing only size when the other
// numeric fields are those of the last plain header.
func (k *headerFields) plainHeader(hdr []byte) (size int64, ok bool) {
	if k.same(hdr) {
		return checkHeader(hdr, false)
	}
	if size, ok = checkHeader(hdr, true); ok {
		k.ok = true
		copy(k.fields[:24], hdr[100:124])
		copy(k.fields[24:36], hdr[136:148])
		copy(k.fields[36:], hdr[329:345])
	}
	return size, ok
}

// zeroTail is what a plain header holds after the device numbers.
var zeroTail = string(make([]byte, blockSize-offPrefix))

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

// hasher computes the SHA-256 of files handed to it in batches, on a
// goroutine of its own.
type hasher struct {
	batch []hashedFile
	in    chan []hashedFile
	out   chan [][]hashedFile
}

func startHasher() *hasher {
	h := &hasher{in: make(chan []hashedFile, 4), out: make(chan [][]hashedFile, 1)}
	go func() {
		var done [][]hashedFile
		for batch := range h.in {
			for i := range batch {
				batch[i].sum = sha256.Sum256(batch[i].data)
			}
			done = append(done, batch)
		}
		h.out <- done
	}()
	return h
}

func (h *hasher) add(path string, data []byte) {
	if h.batch == nil {
		h.batch = make([]hashedFile, 0, hashBatch)
	}
	h.batch = append(h.batch, hashedFile{path: path, data: data})
	if len(h.batch) == hashBatch {
		h.in <- h.batch
		h.batch = nil
	}
}

// wait hands over the last batch and returns every file hashed, in the
// order they were added (hint: about how many).
func (h *hasher) wait(hint int) []hashedFile {
	if len(h.batch) > 0 {
		h.in <- h.batch
	}
	close(h.in)
	out := make([]hashedFile, 0, hint)
	for _, batch := range <-h.out {
		out = append(out, batch...)
	}
	return out
}
