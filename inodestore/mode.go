package inodestore

import "fmt"

// FileHandleMode says when inodes are referenced by file handles instead of
// O_PATH descriptors. The names and meanings are virtiofsd's
// --inode-file-handles.
type FileHandleMode int

const (
	// FileHandlesNever always holds an O_PATH descriptor per inode.
	FileHandlesNever FileHandleMode = iota
	// FileHandlesPrefer uses a file handle where the filesystem can make one
	// and falls back to an O_PATH descriptor where it cannot.
	FileHandlesPrefer
	// FileHandlesMandatory uses file handles only; an inode on a filesystem
	// without them cannot be looked up.
	FileHandlesMandatory
)

var fileHandleModeNames = [...]string{"never", "prefer", "mandatory"}

// String returns the flag spelling of m.
func (m FileHandleMode) String() string {
	if m < 0 || int(m) >= len(fileHandleModeNames) {
		return fmt.Sprintf("FileHandleMode(%d)", int(m))
	}
	return fileHandleModeNames[m]
}

// ParseFileHandleMode parses a --inode-file-handles value.
func ParseFileHandleMode(s string) (FileHandleMode, error) {
	for i, name := range fileHandleModeNames {
		if s == name {
			return FileHandleMode(i), nil
		}
	}
	return 0, fmt.Errorf("invalid inode file handles mode %q: want never, prefer or mandatory", s)
}
