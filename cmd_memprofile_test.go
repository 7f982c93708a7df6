//go:build !viewer

package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMemprofileWritesAHeapProfileTheGoroutinesAndTheRuntimesFigures pins what `loadtest
// --memprofile` leaves behind: a heap profile (gzipped protobuf whose string table names the
// in-use and allocated samples pprof selects), the goroutines beside it, and the live heap and
// stacks on the given writer.
func TestMemprofileWritesAHeapProfileTheGoroutinesAndTheRuntimesFigures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heap.prof")
	var out bytes.Buffer
	require.NoError(t, writeHeapProfile(path, &out))

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Contains(t, string(raw), "inuse_space")
	require.Contains(t, string(raw), "alloc_space")

	g, err := os.ReadFile(path + ".goroutines")
	require.NoError(t, err)
	require.Contains(t, string(g), "goroutine profile: total")
	require.Contains(t, out.String(), "/gc/heap/live:bytes=")
	require.Contains(t, out.String(), "/memory/classes/heap/stacks:bytes=")
}
