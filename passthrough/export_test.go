package passthrough

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/migrate"
)

// TestExportState: what the guest knows is described so that a destination
// finds it again, through host renames; what cannot be described is marked
// with the reason, and the state survives encoding.
func TestExportState(t *testing.T) {
	forEachMigrationMode(t, Options{}, func(t *testing.T, mode migrate.Mode, fs *FS, dir string) {
		for _, d := range []string{"a", "a/b", "a/b/c"} {
			if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		writeHostFile(t, filepath.Join(dir, "a/b/c/deep"), "deep")
		writeHostFile(t, filepath.Join(dir, "a/f"), "f")
		writeHostFile(t, filepath.Join(dir, "gone"), "g")
		a := mustLookup(t, fs, fuseproto.RootID, "a")
		f := mustLookup(t, fs, a, "f")
		mustLookup(t, fs, a, "f") // two lookups
		b := mustLookup(t, fs, a, "b")
		c := mustLookup(t, fs, b, "c")
		deep := mustLookup(t, fs, c, "deep")
		gone := mustLookup(t, fs, fuseproto.RootID, "gone")
		fh, errno := open(t, fs, f, unix.O_RDWR)
		if errno != 0 {
			t.Fatal(errno)
		}
		// The guest forgets b and c but still knows deep: it is
		// then described relative to a.
		fs.Forget(b, 1)
		fs.Forget(c, 1)
		// Host changes after the lookups.
		if err := os.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "renamed")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
			t.Fatal(err)
		}
		sess := fuseproto.Session{Major: 7, Minor: 38, Flags: fuse.CAP_ASYNC_READ, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: 1}
		st, err := fs.ExportState(ExportOptions{Mode: mode}, sess)
		if err != nil {
			t.Fatal(err)
		}
		b2, err := migrate.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		st, err = migrate.Unmarshal(b2)
		if err != nil {
			t.Fatalf("exported state does not validate: %v", err)
		}
		byID := map[uint64]migrate.Inode{}
		for _, i := range st.Inodes {
			byID[i.ID] = i
		}
		if len(st.Handles) != 1 || st.Handles[0].ID != fh || st.Handles[0].Node != uint64(f) || st.Handles[0].GuestFlags != unix.O_RDWR {
			t.Errorf("handles %+v, want handle %d on node %d", st.Handles, fh, f)
		}
		if byID[uint64(f)].Lookups != 2 || st.NextNode <= uint64(gone) || st.Session.Minor != 38 {
			t.Errorf("counts: inode %+v, next node %d, session %+v", byID[uint64(f)], st.NextNode, st.Session)
		}
		if mode == migrate.FindPaths {
			want := map[fuseproto.NodeID]string{a: "renamed", f: "renamed/f", deep: "renamed/b/c/deep"}
			for id, p := range want {
				if got, ok := st.Path(uint64(id)); !ok || got != p {
					t.Errorf("path of %d: %q (%v), want %q", id, got, ok, p)
				}
			}
			if i := byID[uint64(deep)]; i.Parent != uint64(a) || i.Name != "b/c/deep" {
				t.Errorf("deep: parent %d name %q, want %d b/c/deep", i.Parent, i.Name, a)
			}
		}
		// A file removed on the host has no name to find it by, nor
		// one to show a destination that its handle names an object
		// of the shared directory.
		if i := byID[uint64(gone)]; !strings.Contains(i.Invalid, "removed on the host") || !i.Gone {
			t.Errorf("file removed on the host: %+v, want it marked invalid and gone", i)
		}
		root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(root)
		missing := migrate.Verify(st, root)
		if len(missing) != 1 || missing[0].ID != uint64(gone) || !missing[0].LostAtSource {
			t.Errorf("verify: %+v, want only the unlinked file missing, lost at the source", missing)
		}
		release(fs, f, fh)
	})
}

// TestExportConfirmPaths: with --migration-confirm-paths a path that no
// longer leads back to its inode is not sent; the inode is marked invalid
// with the reason. The /proc link of a file replaced at its name while it
// lives on through another link reads "f (deleted)"; a directory hidden by
// a mount keeps its path while the path leads into the mount.
func TestExportConfirmPaths(t *testing.T) {
	tests := []struct {
		name string
		// change alters the host after the guest looked up the inode
		// named probe; it reports false to skip.
		change func(t *testing.T, dir string) bool
		probe  string
		want   string // in the probe's Invalid
		// wantName, if set, is the probe's name: the search fallback
		// found the link that remains.
		wantName string
	}{
		{"unchanged", func(t *testing.T, dir string) bool { return true }, "f", "", "f"},
		{"replaced, the kernel's name leads to another object", func(t *testing.T, dir string) bool {
			replaceKeepingLink(t, dir)
			writeHostFile(t, filepath.Join(dir, "f (deleted)"), "a file of that very name")
			return true
		}, "f", "", "h"},
		{"replaced, the kernel's name leads nowhere", func(t *testing.T, dir string) bool {
			replaceKeepingLink(t, dir)
			return true
		}, "f", "", "h"},
		{"hidden by a mount", func(t *testing.T, dir string) bool {
			d := filepath.Join(dir, "d")
			if err := unix.Mount("tmpfs", d, "tmpfs", 0, ""); err != nil {
				t.Logf("cannot mount (%v)", err)
				return false
			}
			t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
			writeHostFile(t, filepath.Join(d, "x"), "another x")
			return true
		}, "d/x", "leads to another object", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
				writeHostFile(t, filepath.Join(dir, "f"), "f")
				os.Mkdir(filepath.Join(dir, "d"), 0o755)
				writeHostFile(t, filepath.Join(dir, "d/x"), "x")
				writeHostFile(t, filepath.Join(dir, "other"), "other")
				ids := map[string]fuseproto.NodeID{"f": mustLookup(t, fs, fuseproto.RootID, "f"), "other": mustLookup(t, fs, fuseproto.RootID, "other")}
				ids["d"] = mustLookup(t, fs, fuseproto.RootID, "d")
				ids["d/x"] = mustLookup(t, fs, ids["d"], "x")
				if !tt.change(t, dir) {
					t.Skip("cannot make the change")
				}
				st := exportFor(t, fs, ExportOptions{Mode: migrate.FindPaths, ConfirmPaths: true})
				for _, i := range st.Inodes {
					switch fuseproto.NodeID(i.ID) {
					case ids[tt.probe]:
						if tt.want == "" && i.Invalid != "" || !strings.Contains(i.Invalid, tt.want) {
							t.Errorf("inode %s: invalid %q, want %q", tt.probe, i.Invalid, tt.want)
						}
						if tt.wantName != "" && i.Name != tt.wantName {
							t.Errorf("inode %s: name %q, want %q", tt.probe, i.Name, tt.wantName)
						}
					case ids["other"]:
						if i.Invalid != "" {
							t.Errorf("an unchanged file is invalid: %q", i.Invalid)
						}
					}
				}
			})
		})
	}
}

// replaceKeepingLink replaces dir/f by a new file while the old one keeps
// a name, dir/h: its own name is gone, the object is not.
func replaceKeepingLink(t *testing.T, dir string) {
	t.Helper()
	if err := os.Link(filepath.Join(dir, "f"), filepath.Join(dir, "h")); err != nil {
		t.Fatal(err)
	}
	writeHostFile(t, filepath.Join(dir, "new"), "new")
	if err := os.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "f")); err != nil {
		t.Fatal(err)
	}
}
