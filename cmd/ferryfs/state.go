package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/migrate"
)

// errStateProblems makes a command exit 1 after it printed what is wrong.
var errStateProblems = errors.New("")

func newStateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Inspect and check saved migration states",
		Long: `The state subcommands read a migration state as a source ferryfs sends it
(a file, or - for standard input): what the guest knows, and whether a
destination would find it.`,
	}
	cmd.AddCommand(newStateInspectCmd(), newStateVerifyCmd())
	return cmd
}

func newStateInspectCmd() *cobra.Command {
	var asJSON, inodes bool
	cmd := &cobra.Command{
		Use:   "inspect [--json] [--inodes] FILE|-",
		Short: "Show a migration state: format, counts, mode, negotiated session and options",
		Long: `Inspect prints a migration state's format version, mode, negotiated FUSE
session, options and counts; with --inodes every inode with its path (cut
to its end when long) or file handle, marking the entries a destination
could not use. It exits 1 when the state is inconsistent, after saying why.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readStateFile(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			switch err := inspectState(cmd.OutOrStdout(), b, asJSON, inodes); {
			case err == nil, err == errStateProblems: // already reported
				return err
			default:
				return fmt.Errorf("%s: %w", args[0], err)
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, for tools")
	cmd.Flags().BoolVar(&inodes, "inodes", false, "list every inode")
	return cmd
}

func newStateVerifyCmd() *cobra.Command {
	var sharedDir string
	cmd := &cobra.Command{
		Use:   "verify --shared-dir DIR FILE|-",
		Short: "Check that a destination serving DIR would find every inode of a state",
		Long: `Verify resolves every inode of a migration state under DIR the way a
destination ferryfs would (paths beneath DIR without following symlinks, or
file handles through DIR's mount) and names each one it would not find. The
exit status is 0 when all are found, 1 otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sharedDir == "" {
				return errors.New("--shared-dir is required")
			}
			b, err := readStateFile(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			s, err := migrate.Unmarshal(b)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			root, err := unix.Open(sharedDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open shared directory %s: %w", sharedDir, err)
			}
			defer unix.Close(root)
			missing := migrate.Verify(s, root)
			out := cmd.OutOrStdout()
			failing := 0
			for _, m := range missing {
				if m.LostAtSource {
					fmt.Fprintf(out, "gone inode %d (%s): %v; the source cannot reach it either, the migration goes on without it\n", m.ID, m.Where, m.Err)
					continue
				}
				failing++
				fmt.Fprintf(out, "missing inode %d (%s): %v\n", m.ID, m.Where, m.Err)
			}
			fmt.Fprintf(out, "%d of %d inodes found under %s\n", len(s.Inodes)-len(missing), len(s.Inodes), sharedDir)
			if failing > 0 {
				return errStateProblems
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&sharedDir, "shared-dir", "", "the directory a destination would serve (required)")
	return cmd
}

// inspectState writes what state inspect shows of the state b, which may
// be anything: errStateProblems (after the report) when it is
// inconsistent, another error when it is not a state at all. It costs
// time and memory linear in len(b): an inode is shown by its path only
// up to a bounded length (migrate.State.Paths).
func inspectState(out io.Writer, b []byte, asJSON, inodes bool) error {
	s, err := migrate.Peek(b)
	if err != nil {
		return err
	}
	problems := s.Validate()
	report := newStateReport(s, len(b), problems, inodes)
	if asJSON {
		if err := report.writeJSON(out); err != nil {
			return err
		}
	} else {
		report.print(out)
	}
	if problems != nil {
		return errStateProblems
	}
	return nil
}

// maxStateFile bounds what the state commands read.
const maxStateFile = migrate.MaxEncodedSize

func readStateFile(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxStateFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxStateFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, int64(maxStateFile))
	}
	return b, nil
}

// stateReport is what inspect shows, also as JSON.
type stateReport struct {
	Format     string          `json:"format"`
	Version    int             `json:"version"`
	Bytes      int             `json:"bytes"`
	Mode       migrate.Mode    `json:"mode"`
	Session    migrate.Session `json:"session"`
	Options    migrate.Options `json:"options"`
	InodeCount int             `json:"inode_count"`
	Invalid    int             `json:"invalid_inodes"`
	Unlinked   int             `json:"unlinked_inodes"`
	Handles    int             `json:"handle_count"`
	LostHandle int             `json:"lost_handles"`
	NextNode   uint64          `json:"next_node"`
	NextHandle uint64          `json:"next_handle"`
	Problems   []string        `json:"problems,omitempty"`
	Inodes     []inodeReport   `json:"inodes,omitempty"`
}

type inodeReport struct {
	ID      uint64 `json:"id"`
	Lookups uint64 `json:"lookups"`
	Type    string `json:"type"`
	Where   string `json:"where"`
	Handles int    `json:"open_handles,omitempty"`
	// Unlinked marks a file the guest removed while holding it open.
	Unlinked bool   `json:"unlinked,omitempty"`
	Invalid  string `json:"invalid,omitempty"`
}

func newStateReport(s *migrate.State, size int, problems error, withInodes bool) *stateReport {
	r := &stateReport{
		Format: "ferryfs migration state", Version: migrate.Version, Bytes: size,
		Mode: s.Mode, Session: s.Session, Options: s.Options,
		InodeCount: len(s.Inodes), Handles: len(s.Handles), NextNode: s.NextNode, NextHandle: s.NextHandle,
	}
	if problems != nil {
		r.Problems = strings.Split(problems.Error(), "\n")
	}
	for _, i := range s.Inodes {
		if i.Invalid != "" {
			r.Invalid++
		} else if i.Unlinked {
			r.Unlinked++
		}
	}
	for _, h := range s.Handles {
		if h.Lost != 0 {
			r.LostHandle++
		}
	}
	if !withInodes {
		return r
	}
	open := make(map[uint64]int)
	for _, h := range s.Handles {
		open[h.Node]++
	}
	paths := s.Paths()
	r.Inodes = make([]inodeReport, 0, len(s.Inodes))
	for k := range s.Inodes {
		i := &s.Inodes[k]
		ir := inodeReport{ID: i.ID, Lookups: i.Lookups, Type: migrate.TypeName(i.Type), Where: migrate.Describe(i, paths),
			Handles: open[i.ID], Unlinked: i.Unlinked, Invalid: i.Invalid}
		if _, ok := paths[i.ID]; !ok && i.ID != migrate.RootID && s.Mode == migrate.FindPaths && ir.Invalid == "" {
			ir.Invalid = "no path: a parent is missing"
		}
		r.Inodes = append(r.Inodes, ir)
	}
	return r
}

// writeJSON writes r as indented JSON, an inode at a time: encoding the
// whole report at once would hold all of it, several times over, in
// memory.
func (r *stateReport) writeJSON(w io.Writer) error {
	head := *r
	head.Inodes = nil
	b, err := json.MarshalIndent(&head, "", "  ")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	if len(r.Inodes) == 0 {
		bw.Write(b)
		bw.WriteByte('\n')
		return bw.Flush()
	}
	// b ends with the closing brace on its own line: the inodes go
	// before it.
	bw.Write(bytes.TrimSuffix(b, []byte("\n}")))
	bw.WriteString(",\n  \"inodes\": [")
	for k := range r.Inodes {
		if k > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		e, err := json.MarshalIndent(&r.Inodes[k], "    ", "  ")
		if err != nil {
			return err
		}
		bw.Write(e)
	}
	bw.WriteString("\n  ]\n}\n")
	return bw.Flush()
}

func (r *stateReport) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "format\t%s, version %d (%d bytes)\n", r.Format, r.Version, r.Bytes)
	fmt.Fprintf(tw, "mode\t%s\n", r.Mode)
	fmt.Fprintf(tw, "session\tFUSE %d.%d, flags %#x, max_write %d, max_pages %d, max_readahead %d\n",
		r.Session.Major, r.Session.Minor, r.Session.Flags, r.Session.MaxWrite, r.Session.MaxPages, r.Session.MaxReadahead)
	o := r.Options
	fmt.Fprintf(tw, "options\tcache=%s writeback=%v readonly=%v xattr=%v posix-acl=%v security-label=%v killpriv-v2=%v announce-submounts=%v\n",
		o.Cache, o.Writeback, o.Readonly, o.Xattr, o.PosixACL, o.SecurityLabel, o.KillprivV2, o.AnnounceSubmount)
	if o.XattrMap != "" {
		fmt.Fprintf(tw, "\txattrmap=%q\n", o.XattrMap)
	}
	if len(o.TranslateUID)+len(o.TranslateGID) > 0 {
		fmt.Fprintf(tw, "\ttranslate-uid=%v translate-gid=%v\n", o.TranslateUID, o.TranslateGID)
	}
	fmt.Fprintf(tw, "inodes\t%d (%d invalid, %d unlinked while open)\n", r.InodeCount, r.Invalid, r.Unlinked)
	fmt.Fprintf(tw, "handles\t%d (%d lost in an earlier migration)\n", r.Handles, r.LostHandle)
	fmt.Fprintf(tw, "next ids\tnode %d, handle %d\n", r.NextNode, r.NextHandle)
	tw.Flush()
	if len(r.Problems) > 0 {
		fmt.Fprintf(w, "problems:\n")
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	if r.Inodes == nil {
		return
	}
	// Columns as wide as their widest cell, measured first: a
	// tabwriter would hold the whole table until it is flushed.
	wID, wLookups, wType, wOpen := len("ID"), len("LOOKUPS"), len("TYPE"), len("OPEN")
	for _, i := range r.Inodes {
		wID = max(wID, decimalLen(i.ID))
		wLookups = max(wLookups, decimalLen(i.Lookups))
		wType = max(wType, len(i.Type))
		wOpen = max(wOpen, decimalLen(uint64(i.Handles)))
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw)
	fmt.Fprintf(bw, "%-*s  %-*s  %-*s  %-*s  WHERE\n", wID, "ID", wLookups, "LOOKUPS", wType, "TYPE", wOpen, "OPEN")
	for _, i := range r.Inodes {
		fmt.Fprintf(bw, "%-*d  %-*d  %-*s  %-*d  %s", wID, i.ID, wLookups, i.Lookups, wType, i.Type, wOpen, i.Handles, i.Where)
		if i.Invalid != "" {
			fmt.Fprintf(bw, "  INVALID: %s", i.Invalid)
		}
		bw.WriteByte('\n')
	}
	bw.Flush()
}

// decimalLen is the number of digits of n.
func decimalLen(n uint64) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}
