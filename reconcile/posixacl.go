package reconcile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// A POSIX access ACL as the kernel stores it in the system.posix_acl_access
// extended attribute (linux/posix_acl_xattr.h): a little-endian u32
// version (2), then entries of u16 tag, u16 perm, u32 id, sorted by tag
// then id. The format is checked against setfacl and getfacl in the tests.

const (
	aclXattr   = "system.posix_acl_access"
	aclVersion = 2

	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20

	aclUndefinedID = 0xffffffff
)

type aclEntry struct {
	Tag  uint16
	Perm uint16 // rwx bits: 4 read, 2 write, 1 execute
	ID   uint32
}

// posixACL is an access ACL; entries kept sorted as the kernel wants them.
type posixACL []aclEntry

// parseACL decodes the xattr's value.
func parseACL(b []byte) (posixACL, error) {
	if len(b) < 4 || (len(b)-4)%8 != 0 {
		return nil, fmt.Errorf("posix acl: %d bytes is not a header and whole entries", len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != aclVersion {
		return nil, fmt.Errorf("posix acl: version %d, want %d", v, aclVersion)
	}
	var a posixACL
	for p := b[4:]; len(p) > 0; p = p[8:] {
		e := aclEntry{Tag: binary.LittleEndian.Uint16(p), Perm: binary.LittleEndian.Uint16(p[2:]), ID: binary.LittleEndian.Uint32(p[4:])}
		switch e.Tag {
		case aclUserObj, aclGroupObj, aclMask, aclOther:
			e.ID = aclUndefinedID
		case aclUser, aclGroup:
		default:
			return nil, fmt.Errorf("posix acl: unknown tag %#x", e.Tag)
		}
		if e.Perm&^7 != 0 {
			return nil, fmt.Errorf("posix acl: permission bits %#x", e.Perm)
		}
		a = append(a, e)
	}
	return a, a.valid()
}

// aclFromMode is the minimal ACL a file without the xattr has.
func aclFromMode(mode uint32) posixACL {
	return posixACL{
		{aclUserObj, uint16(mode>>6) & 7, aclUndefinedID},
		{aclGroupObj, uint16(mode>>3) & 7, aclUndefinedID},
		{aclOther, uint16(mode) & 7, aclUndefinedID},
	}
}

// valid checks what the kernel checks: one of each object entry, a mask
// when there are named entries, no named entry twice.
func (a posixACL) valid() error {
	count := map[uint16]int{}
	seen := map[[2]uint32]bool{}
	for _, e := range a {
		count[e.Tag]++
		if e.Tag == aclUser || e.Tag == aclGroup {
			k := [2]uint32{uint32(e.Tag), e.ID}
			if seen[k] {
				return fmt.Errorf("posix acl: tag %#x id %d twice", e.Tag, e.ID)
			}
			seen[k] = true
		}
	}
	if count[aclUserObj] != 1 || count[aclGroupObj] != 1 || count[aclOther] != 1 || count[aclMask] > 1 {
		return errors.New("posix acl: needs exactly one user::, group:: and other:: entry and at most one mask")
	}
	if count[aclUser]+count[aclGroup] > 0 && count[aclMask] == 0 {
		return errors.New("posix acl: named entries without a mask")
	}
	return nil
}

// encode is the xattr value, entries sorted.
func (a posixACL) encode() []byte {
	s := append(posixACL(nil), a...)
	sort.Slice(s, func(i, j int) bool {
		if s[i].Tag != s[j].Tag {
			return s[i].Tag < s[j].Tag
		}
		return s[i].ID < s[j].ID
	})
	b := make([]byte, 4, 4+8*len(s))
	binary.LittleEndian.PutUint32(b, aclVersion)
	for _, e := range s {
		b = binary.LittleEndian.AppendUint16(b, e.Tag)
		b = binary.LittleEndian.AppendUint16(b, e.Perm)
		b = binary.LittleEndian.AppendUint32(b, e.ID)
	}
	return b
}

// user returns the named user entry for uid.
func (a posixACL) user(uid uint32) (uint16, bool) {
	for _, e := range a {
		if e.Tag == aclUser && e.ID == uid {
			return e.Perm, true
		}
	}
	return 0, false
}

// mask returns the mask entry.
func (a posixACL) mask() (uint16, bool) {
	for _, e := range a {
		if e.Tag == aclMask {
			return e.Perm, true
		}
	}
	return 0, false
}

// setUser sets (or with remove, deletes) the named user entry for uid.
func (a posixACL) setUser(uid uint32, perm uint16, remove bool) posixACL {
	out := a[:0:0]
	for _, e := range a {
		if e.Tag == aclUser && e.ID == uid {
			continue
		}
		out = append(out, e)
	}
	if !remove {
		out = append(out, aclEntry{aclUser, perm, uid})
	}
	return out
}

// withMask sets the mask: to perm, to the union of the group class (the
// named entries and group::, as setfacl recomputes it) when perm < 0, or
// drops it when there are no named entries and perm < 0 (the minimal ACL,
// which the kernel stores as the mode alone).
func (a posixACL) withMask(perm int) posixACL {
	out := a[:0:0]
	var union uint16
	named := false
	for _, e := range a {
		switch e.Tag {
		case aclMask:
			continue
		case aclUser, aclGroup:
			named = true
			union |= e.Perm
		case aclGroupObj:
			union |= e.Perm
		}
		out = append(out, e)
	}
	switch {
	case perm >= 0:
		out = append(out, aclEntry{aclMask, uint16(perm), aclUndefinedID})
	case named:
		out = append(out, aclEntry{aclMask, union, aclUndefinedID})
	}
	return out
}

// permString is getfacl's rwx form.
func permString(p uint16) string {
	b := []byte("---")
	if p&4 != 0 {
		b[0] = 'r'
	}
	if p&2 != 0 {
		b[1] = 'w'
	}
	if p&1 != 0 {
		b[2] = 'x'
	}
	return string(b)
}
