package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagGroupKey is the pflag annotation that files a flag under a heading
// of the help text.
const flagGroupKey = "ferryfs/group"

// The help text's flag headings, in the order they are printed. Flags
// without a heading (--help, --version, --print-capabilities) come last,
// under groupOther.
const (
	groupSocket     = "Vhost-user socket"
	groupFS         = "Shared directory and file system"
	groupProcess    = "Process, sandbox and limits"
	groupLogging    = "Logging"
	groupMigration  = "Live migration"
	groupDeprecated = "Deprecated (virtiofsd's older spellings)"
	groupOther      = "Other"
)

var flagGroupOrder = []string{
	groupSocket, groupFS, groupProcess, groupLogging, groupMigration, groupDeprecated, groupOther,
}

// setFlagGroup files the named flags of fl under group.
func setFlagGroup(fl *pflag.FlagSet, group string, names ...string) {
	for _, name := range names {
		if err := fl.SetAnnotation(name, flagGroupKey, []string{group}); err != nil {
			panic(err) // a flag we registered ourselves is missing: a bug
		}
	}
}

// flagGroup is one heading of the help text and its flags' usage lines.
type flagGroup struct {
	Title  string
	Usages string
}

// flagGroups sorts the visible flags of fs under their headings.
func flagGroups(fs *pflag.FlagSet) []flagGroup {
	sets := make(map[string]*pflag.FlagSet)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		group := groupOther
		if g := f.Annotations[flagGroupKey]; len(g) > 0 {
			group = g[0]
		}
		set, ok := sets[group]
		if !ok {
			set = pflag.NewFlagSet(group, pflag.ContinueOnError)
			set.SortFlags = false
			sets[group] = set
		}
		set.AddFlag(f)
	})
	var groups []flagGroup
	for _, title := range flagGroupOrder {
		if set, ok := sets[title]; ok {
			groups = append(groups, flagGroup{Title: title, Usages: set.FlagUsages()})
		}
	}
	return groups
}

// usageTemplate is cobra's default usage template with the flags printed
// under their headings instead of in one list.
const usageTemplate = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Available Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}{{range flagGroups .LocalFlags}}

{{.Title}}:
{{.Usages | trimTrailingWhitespaces}}{{end}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}
`

// setGroupedUsage makes cmd and its subcommands print their flags under
// headings.
func setGroupedUsage(cmd *cobra.Command) {
	// AddTemplateFunc registers globally; doing it again is harmless.
	cobra.AddTemplateFunc("flagGroups", flagGroups)
	cmd.SetUsageTemplate(usageTemplate)
}

// notYet marks the help of a flag ferryfs accepts only to refuse.
func notYet(help string) string {
	return strings.TrimSpace(help + " (not supported yet)")
}
