// Command crowdsurf is one binary with a subcommand per role: origin, tracker, peer, demo, play,
// loadtest, keygen. Each subcommand parses its own flags and hands off to its component's
// New(cfg)/Run(ctx); this file only dispatches and turns signals into context cancellation.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

// register is called from the init function of each cmd_*.go file.
func register(name, summary string, run func(ctx context.Context, args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

// soleCommand names the only command of a build that has one (the viewer's crowdsurf-peer, built
// with -tags viewer: see the Makefile).
func soleCommand() (string, bool) {
	if len(commands) != 1 {
		return "", false
	}
	for name := range commands {
		return name, true
	}
	return "", false
}

func usage() {
	fmt.Fprintf(os.Stderr, "crowdsurf: live P2P broadcast over a QUIC mesh, played as plain HLS.\n\n")
	fmt.Fprintf(os.Stderr, "Usage: crowdsurf COMMAND [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'crowdsurf COMMAND --help' for the flags of a command. Every flag can also be set with\n")
	fmt.Fprintf(os.Stderr, "an environment variable CROWDSURF_<FLAG> (e.g. CROWDSURF_LOG_LEVEL=debug); flags win.\n")
}

func main() {
	if only, ok := soleCommand(); ok && (len(os.Args) < 2 || os.Args[1] != only) {
		// The viewer build (crowdsurf-peer) has the peer command alone: its flags and
		// arguments, --help included, come straight after the binary's name.
		os.Args = append([]string{os.Args[0], only}, os.Args[1:]...)
	}
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	name, args := os.Args[1], os.Args[2:]
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "crowdsurf: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}

	// The first SIGINT/SIGTERM cancels ctx so components drain (peers say GOODBYE, the origin
	// finishes its segment); a second one exits at once.
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "crowdsurf: shutting down (interrupt again to exit now)")
		cancel()
		<-sigs
		os.Exit(130)
	}()

	err := cmd.run(ctx, args)
	cancel()
	if err != nil && !errors.Is(err, flag.ErrHelp) && !errors.Is(err, context.Canceled) {
		// Components prefix their errors with their name ("origin: ..."), which is the command's.
		msg := strings.TrimPrefix(err.Error(), name+": ")
		fmt.Fprintf(os.Stderr, "crowdsurf %s: %s\n", name, msg)
		os.Exit(1)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
}
