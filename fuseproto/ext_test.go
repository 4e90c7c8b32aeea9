package fuseproto

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"
)

// extRecord builds one fuse_ext_header record of the given type around body,
// padded to 8 bytes.
func extRecord(typ uint32, body []byte) []byte {
	size := (extHeaderSize + len(body) + 7) &^ 7
	b := make([]byte, size)
	binary.NativeEndian.PutUint32(b, uint32(size))
	binary.NativeEndian.PutUint32(b[4:], typ)
	copy(b[extHeaderSize:], body)
	return b
}

func groupsBody(groups ...uint32) []byte {
	b := make([]byte, 4+4*len(groups))
	binary.NativeEndian.PutUint32(b, uint32(len(groups)))
	for i, g := range groups {
		binary.NativeEndian.PutUint32(b[4+4*i:], g)
	}
	return b
}

func secctxBody(name string, value []byte) []byte {
	b := make([]byte, secCtxSize, secCtxSize+len(name)+1+len(value)+7)
	binary.NativeEndian.PutUint32(b, uint32(len(value)))
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, value...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestExtensionsParse(t *testing.T) {
	label := []byte("system_u:object_r:user_home_t:s0\x00")
	tests := []struct {
		name      string
		ext       []byte
		groups    []uint32
		secctx    string // name of the one context, "" for none
		value     []byte
		wantErrno syscall.Errno
	}{
		{name: "none", ext: nil},
		{name: "one group", ext: extRecord(extGroups, groupsBody(1000)), groups: []uint32{1000}},
		{name: "zero groups", ext: extRecord(extGroups, groupsBody()), groups: []uint32{}},
		{name: "security context", ext: extRecord(1, secctxBody("security.selinux", label)), secctx: "security.selinux", value: label},
		{name: "empty context block", ext: extRecord(0, nil)},
		{name: "both", ext: append(extRecord(1, secctxBody("security.selinux", label)), extRecord(extGroups, groupsBody(7))...),
			groups: []uint32{7}, secctx: "security.selinux", value: label},
		{name: "unknown type skipped", ext: append(extRecord(99, []byte("abc")), extRecord(extGroups, groupsBody(5))...), groups: []uint32{5}},

		{name: "short header", ext: []byte{1, 2, 3}, wantErrno: syscall.EINVAL},
		{name: "size below header", ext: func() []byte { b := extRecord(extGroups, groupsBody(1)); binary.NativeEndian.PutUint32(b, 4); return b }(), wantErrno: syscall.EINVAL},
		{name: "size past end", ext: func() []byte {
			b := extRecord(extGroups, groupsBody(1))
			binary.NativeEndian.PutUint32(b, 64)
			return b
		}(), wantErrno: syscall.EINVAL},
		{name: "size not aligned", ext: func() []byte {
			b := extRecord(extGroups, groupsBody(1))
			binary.NativeEndian.PutUint32(b, 12)
			return b
		}(), wantErrno: syscall.EINVAL},
		{name: "group count past record", ext: func() []byte {
			b := extRecord(extGroups, groupsBody(1))
			binary.NativeEndian.PutUint32(b[extHeaderSize:], 1<<30)
			return b
		}(), wantErrno: syscall.EINVAL},
		{name: "too many groups", ext: extRecord(extGroups, groupsBody(1, 2, 3)), wantErrno: syscall.EINVAL},
		{name: "two group records", ext: append(extRecord(extGroups, groupsBody(1)), extRecord(extGroups, groupsBody(2))...), wantErrno: syscall.EINVAL},
		{name: "two contexts", ext: extRecord(2, append(secctxBody("a", nil), secctxBody("b", nil)...)), wantErrno: syscall.EINVAL},
		{name: "context without NUL", ext: extRecord(1, append([]byte{0, 0, 0, 0, 0, 0, 0, 0}, "security.selinuxxxxxxxxx"...)), wantErrno: syscall.EINVAL},
		{name: "context value past record", ext: func() []byte {
			body := secctxBody("n", []byte("v"))
			binary.NativeEndian.PutUint32(body, 1000)
			return extRecord(1, body)
		}(), wantErrno: syscall.EINVAL},
		{name: "context empty name", ext: extRecord(1, secctxBody("", []byte("v"))), wantErrno: syscall.EINVAL},
		{name: "context record truncated", ext: extRecord(1, []byte{1, 0}), wantErrno: syscall.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Extensions
			err := e.parse(tt.ext)
			if tt.wantErrno != 0 {
				var errno syscall.Errno
				if !errors.As(err, &errno) || errno != tt.wantErrno {
					t.Fatalf("parse: %v, want errno %v", err, tt.wantErrno)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if (tt.groups == nil) != (e.SuppGroups == nil) || len(tt.groups) != len(e.SuppGroups) {
				t.Fatalf("groups %v, want %v", e.SuppGroups, tt.groups)
			}
			for i := range tt.groups {
				if e.SuppGroups[i] != tt.groups[i] {
					t.Fatalf("groups %v, want %v", e.SuppGroups, tt.groups)
				}
			}
			switch {
			case tt.secctx == "" && len(e.SecCtx) != 0:
				t.Fatalf("contexts %v, want none", e.SecCtx)
			case tt.secctx != "":
				if len(e.SecCtx) != 1 || e.SecCtx[0].Name != tt.secctx || string(e.SecCtx[0].Value) != string(tt.value) {
					t.Fatalf("contexts %+v, want %s=%q", e.SecCtx, tt.secctx, tt.value)
				}
			}
		})
	}
}

// FuzzExtensions feeds arbitrary extension areas to the parser: it must
// never panic, and what it accepts must lie within the input.
func FuzzExtensions(f *testing.F) {
	f.Add(extRecord(extGroups, groupsBody(1000)))
	f.Add(extRecord(1, secctxBody("security.selinux", []byte("label\x00"))))
	f.Add(append(extRecord(0, nil), extRecord(77, []byte("x"))...))
	f.Fuzz(func(t *testing.T, ext []byte) {
		var e Extensions
		if err := e.parse(ext); err != nil {
			return
		}
		if len(e.SuppGroups) > maxSuppGroups || len(e.SecCtx) > maxSecCtx {
			t.Fatalf("accepted %d groups and %d contexts", len(e.SuppGroups), len(e.SecCtx))
		}
		for _, c := range e.SecCtx {
			if c.Name == "" || len(c.Value) > len(ext) {
				t.Fatalf("accepted context %q with %d-byte value from %d bytes", c.Name, len(c.Value), len(ext))
			}
		}
	})
}
