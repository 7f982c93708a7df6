package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// What every subcommand shares: flags can be set from CROWDSURF_<FLAG> environment variables, and
// one --log-level flag sets how much is logged.

// envName is the environment variable of a flag: CROWDSURF_ and the flag's name in upper case
// with '-' as '_' (--publish-key: CROWDSURF_PUBLISH_KEY).
func envName(flagName string) string {
	return "CROWDSURF_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// deprecatedPrefix starts the usage of a flag kept only for old command lines; such flags take no
// environment variable.
const deprecatedPrefix = "deprecated"

// parseFlags parses args and then sets every flag not given on the command line from its
// environment variable (envName), or else from an older variable name in oldEnv (flag name ->
// variable) that releases before the one scheme used. Flags win over the environment.
func parseFlags(fs *flag.FlagSet, args []string, oldEnv map[string]string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	return applyEnv(fs, oldEnv)
}

// applyEnv is the environment half of parseFlags, for commands that parse in several steps.
func applyEnv(fs *flag.FlagSet, oldEnv map[string]string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || strings.HasPrefix(f.Usage, deprecatedPrefix) {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok && oldEnv[f.Name] != "" {
			name = oldEnv[f.Name]
			v, ok = os.LookupEnv(name)
		}
		if !ok || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q (for --%s): %w", name, v, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// printFlags prints the flags and, once for every command, how the environment sets them.
func printFlags(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Flags:\n")
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nEvery flag can also be set with an environment variable CROWDSURF_<FLAG>: the flag's name in\n")
	fmt.Fprintf(w, "upper case with - as _, e.g. CROWDSURF_LOG_LEVEL=debug for --log-level. Flags given on the\n")
	fmt.Fprintf(w, "command line win over the environment.\n")
}

// logFlags is --log-level, plus the deprecated flag an older release used for it (-v or
// --verbose), which stands for one level.
type logFlags struct {
	level      *string
	deprecated *bool
	aliasLevel string
}

// addLogFlags adds --log-level with default def; alias, when not empty, is the old boolean flag
// kept for old command lines, which means --log-level aliasLevel.
func addLogFlags(fs *flag.FlagSet, def, alias, aliasLevel string) *logFlags {
	l := &logFlags{aliasLevel: aliasLevel}
	l.level = fs.String("log-level", def, "log `LEVEL`: debug, info, warn or error")
	if alias != "" {
		l.deprecated = fs.Bool(alias, false, fmt.Sprintf("%s: same as --log-level %s", deprecatedPrefix, aliasLevel))
	}
	return l
}

// logger returns a text logger on w at the chosen level.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	text := *l.level
	if l.deprecated != nil && *l.deprecated {
		text = l.aliasLevel
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(text)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", text)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
}

// selfName is how the user ran this binary, for the commands it suggests (bin/crowdsurf after
// make, crowdsurf when it is on the PATH).
func selfName() string {
	name := os.Args[0]
	if strings.Contains(name, "go-build") { // go run
		return "go run ."
	}
	if filepath.IsAbs(name) {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, name); err == nil && !strings.HasPrefix(rel, "..") {
				return rel
			}
		}
	}
	return name
}
