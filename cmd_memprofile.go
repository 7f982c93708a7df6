//go:build !viewer

package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
)

// writeHeapProfile collects first, so the profile's in-use figures are the live heap of this
// moment rather than of the last cycle, writes the heap profile to path and a goroutine profile to path.goroutines, and prints the runtime's
// own view of where the process's memory is to w: what the load test's max RSS is made of.
func writeHeapProfile(path string, w io.Writer) error {
	runtime.GC()
	if err := writeProfile("heap", path, 0); err != nil {
		return err
	}
	// The goroutines beside it: each holds a stack of at least 8 KiB that the heap profile does
	// not show, and the collector's goal grows with the stacks as with the heap.
	if err := writeProfile("goroutine", path+".goroutines", 1); err != nil {
		return err
	}
	samples := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(samples)
	fmt.Fprintf(w, "\nheap profile written to %s (goroutines: %[1]s.goroutines); runtime memory after a collection:", path)
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			fmt.Fprintf(w, " %s=%d", s.Name, s.Value.Uint64())
		}
	}
	fmt.Fprintln(w)
	return nil
}

// writeProfile writes the runtime's profile name (pprof.Lookup) to path, in pprof's format for
// debug 0 and as text for 1.
func writeProfile(name, path string, debug int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("%s profile: %w", name, err)
	}
	if err := pprof.Lookup(name).WriteTo(f, debug); err != nil {
		f.Close()
		return fmt.Errorf("%s profile %s: %w", name, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s profile %s: %w", name, path, err)
	}
	return nil
}
