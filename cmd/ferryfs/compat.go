package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// This file holds what ferryfs does to take virtiofsd's command line: the
// deprecated -o form, and the refusal of flags whose feature ferryfs does
// not have yet. The reference is virtiofsd 1.13, src/main.rs (struct Opt
// and parse_compat).

// compatValue is one value a KEY=VALUE option of -o takes.
type compatValue struct {
	compat string // as -o spells it
	flag   string // the value of the flag it sets
}

// compatValues are the KEY=VALUE options of -o that take one of a few
// values, by key: the flag each sets and its values. The names are those
// of the C virtiofsd, hence cache=none and loglevel=err; sandbox=none was
// never one of them.
var compatValues = map[string]struct {
	flag   string
	values []compatValue
}{
	"cache":    {"cache", []compatValue{{"auto", "auto"}, {"always", "always"}, {"none", "never"}, {"metadata", "metadata"}}},
	"loglevel": {"log-level", []compatValue{{"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"err", "error"}}},
	"sandbox":  {"sandbox", []compatValue{{"namespace", "namespace"}, {"chroot", "chroot"}}},
}

// compatSwitches are the -o options without a value, in virtiofsd's
// order. no_posix_lock and no_flock ask for what virtiofsd (and ferryfs)
// does anyway; virtiofsd refuses posix_lock and flock.
var compatSwitches = []string{
	"xattr", "no_xattr", "readdirplus", "no_readdirplus", "writeback", "no_writeback",
	"allow_direct_io", "no_allow_direct_io", "announce_submounts", "killpriv_v2", "no_killpriv_v2",
	"posix_acl", "no_posix_acl", "security_label", "no_security_label", "no_posix_lock", "no_flock",
}

// applyCompatOptions applies the -o options over the flags, as virtiofsd
// does: each -o value is a comma-separated list of KEY=VALUE options and
// switches, and they win over the flags whatever the order.
func (f *daemonFlags) applyCompatOptions() error {
	for _, list := range f.compatOptions {
		for _, opt := range strings.Split(list, ",") {
			if err := f.applyCompatOption(opt); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyCompatOption applies one -o option.
func (f *daemonFlags) applyCompatOption(opt string) error {
	if key, value, ok := strings.Cut(opt, "="); ok {
		return f.applyCompatValue(opt, key, value)
	}
	set := func(flag string, p *bool, v bool) {
		*p = v
		f.given[flag] = "-o " + opt
	}
	switch opt {
	case "xattr", "no_xattr":
		set("xattr", &f.xattr, opt == "xattr")
	case "readdirplus", "no_readdirplus":
		set("no-readdirplus", &f.noReaddirplus, opt == "no_readdirplus")
	case "writeback", "no_writeback":
		set("writeback", &f.writeback, opt == "writeback")
	case "allow_direct_io", "no_allow_direct_io":
		set("allow-direct-io", &f.allowDirectIO, opt == "allow_direct_io")
	case "announce_submounts":
		set("announce-submounts", &f.announceSubmounts, true)
	case "killpriv_v2", "no_killpriv_v2":
		set("killpriv-v2", &f.killprivV2, opt == "killpriv_v2")
	case "posix_acl", "no_posix_acl":
		set("posix-acl", &f.posixACL, opt == "posix_acl")
	case "security_label", "no_security_label":
		set("security-label", &f.securityLabel, opt == "security_label")
	case "no_posix_lock", "no_flock":
		// What ferryfs does anyway.
	default:
		return unknownCompatOption(opt)
	}
	return nil
}

// applyCompatValue applies the -o option opt, which is key=value.
func (f *daemonFlags) applyCompatValue(opt, key, value string) error {
	if strings.Contains(value, "=") {
		// virtiofsd splits at every '='.
		return fmt.Errorf("-o %s: more than one '=' in an option", opt)
	}
	switch key {
	case "source":
		f.sharedDir = value
		f.given["shared-dir"] = "-o source"
		return nil
	case "xattrmap":
		f.xattrmap = value
		f.given["xattrmap"] = "-o xattrmap"
		return nil
	case "modcaps":
		f.modcaps = value
		f.given["modcaps"] = "-o modcaps"
		return nil
	}
	option, ok := compatValues[key]
	if !ok {
		return unknownCompatOption(opt)
	}
	var names []string
	for _, v := range option.values {
		if v.compat != value {
			names = append(names, v.compat)
			continue
		}
		switch option.flag {
		case "cache":
			f.cache = v.flag
		case "log-level":
			f.logLevel = v.flag
		case "sandbox":
			f.sandbox = v.flag
		}
		f.given[option.flag] = "-o " + key
		return nil
	}
	return fmt.Errorf("-o %s: invalid value %q: want %s", opt, value, choices(names...))
}

// unknownCompatOption is the error for an option -o does not take.
func unknownCompatOption(opt string) error {
	return fmt.Errorf("-o %s: unknown option: want source=, cache=, loglevel=, sandbox=, xattrmap=, modcaps= or one of %s",
		opt, strings.Join(compatSwitches, ", "))
}

// errNotSupportedYet is what every refusal of a virtiofsd flag is.
var errNotSupportedYet = errors.New("not supported yet")

// unsupportedError refuses a virtiofsd flag whose feature ferryfs does not
// have yet.
type unsupportedError struct {
	flag    string // as given, e.g. "--sandbox=namespace" or "-o posix_acl"
	feature string
	hint    string // what to do instead; may be empty
}

func (e *unsupportedError) Error() string {
	msg := fmt.Sprintf("%s is %s (%s)", e.flag, errNotSupportedYet, e.feature)
	if e.hint != "" {
		msg += ": " + e.hint
	}
	return msg
}

func (e *unsupportedError) Is(target error) bool { return target == errNotSupportedYet }

// Features ferryfs lacks, as refusals name them.
const (
	featureSandbox = "sandboxing"
)

// refuseUnsupported returns an error naming every flag given whose feature
// ferryfs does not have yet, nil if there is none. It first checks the
// values of those flags that take one of a few, so that a typo is reported
// as such.
func (f *daemonFlags) refuseUnsupported() error {
	for _, c := range []struct {
		flag, value string
		choices     []string
	}{
		{"sandbox", strings.ToLower(f.sandbox), []string{"namespace", "chroot", "none"}},
		{"seccomp", f.seccomp, []string{"none", "kill", "log", "trap"}},
		{"migration-mode", f.migrationMode, []string{"find-paths", "file-handles"}},
		{"migration-on-error", f.migrationOnError, []string{"abort", "guest-error"}},
	} {
		if !slices.Contains(c.choices, c.value) {
			return fmt.Errorf("--%s: invalid value %q: want %s", c.flag, c.value, choices(c.choices...))
		}
	}

	var errs []error
	refuse := func(flag, feature, hint string) {
		errs = append(errs, &unsupportedError{flag: flag, feature: feature, hint: hint})
	}
	if sandbox := strings.ToLower(f.sandbox); sandbox != "none" {
		refuse(f.spelling("sandbox")+"="+sandbox, featureSandbox,
			"ferryfs does not isolate itself in namespaces or a chroot; pass --sandbox=none and confine it from outside (a systemd unit, a container, an LSM)")
	}
	if f.seccomp != "none" {
		refuse(f.spelling("seccomp")+"="+f.seccomp, "seccomp filtering", "pass --seccomp=none")
	}
	if f.isGiven("modcaps") {
		refuse(f.spelling("modcaps"), "capability dropping", "ferryfs keeps the capabilities it is started with")
	}
	for _, name := range []string{"uid-map", "gid-map"} {
		if f.isGiven(name) {
			refuse(f.spelling(name), featureSandbox, "the user namespace these map ids into is --sandbox=namespace's")
		}
	}
	return errors.Join(errs...)
}

// isGiven reports whether the flag called name was set on the command
// line, as a flag or through -o.
func (f *daemonFlags) isGiven(name string) bool {
	_, ok := f.given[name]
	return ok
}

// spelling returns how the flag called name was given: "--name", or the
// -o option that set it.
func (f *daemonFlags) spelling(name string) string {
	if s, ok := f.given[name]; ok {
		return s
	}
	return "--" + name
}

// choices lists names as "a, b or c".
func choices(names ...string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
