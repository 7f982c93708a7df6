package main

import (
	"fmt"
	"runtime"
)

// coresFlagHelp explains --cores, the peer's GOMAXPROCS.
const coresFlagHelp = "how many cores the peer's Go runtime runs on at once (GOMAXPROCS); 0 = Go's default\n" +
	"(every core the machine or container gives it). A viewer's work is many small wake-ups (a packet, a\n" +
	"chunk, a HAVE); with two cores the runtime wakes a second thread for most of them, which cost a leaf\n" +
	"10-20 % more CPU in all and a relay up to 17 % more (make bench-peer), and a viewer needs a few percent\n" +
	"of one core (a relay sending eight copies of a 4 Mbit/s stream, 10 %). Without this flag a GOMAXPROCS\n" +
	"in the environment is left alone"

// peerCores is what the peer sets GOMAXPROCS to (0: leave the runtime alone): the flag's value
// when it was given (on the command line or as CROWDSURF_CORES), else its default unless the
// environment already says GOMAXPROCS.
func peerCores(cores int, given bool, envGOMAXPROCS string) (int, error) {
	if cores < 0 {
		return 0, fmt.Errorf("--cores %d: give a number of cores, or 0 for Go's default", cores)
	}
	if !given && envGOMAXPROCS != "" {
		return 0, nil
	}
	return cores, nil
}

// setCores applies peerCores.
func setCores(cores int, given bool, envGOMAXPROCS string) error {
	n, err := peerCores(cores, given, envGOMAXPROCS)
	if err != nil || n == 0 {
		return err
	}
	runtime.GOMAXPROCS(n)
	return nil
}
