package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestViewerBuildLinksNoBroadcasterCode: crowdsurf-peer (-tags viewer) is what a viewer
// downloads; it must not carry the NATS server or client, the RTSP stack, the MPEG-TS muxer, the
// load test's plots or the test card. mediacommon's codec and fMP4 packages are in: every peer
// derives the LL-HLS fMP4 parts from the chunks it verified (segwindow).
func TestViewerBuildLinksNoBroadcasterCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "viewer", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := string(out)
	require.Contains(t, deps, "github.com/crowdsurf/crowdsurf/peer\n")
	for _, banned := range []string{"nats-io", "gortsplib", "mediacommon/v2/pkg/formats/mpegts", "gonum.org", "internal/testcard", "crowdsurf/origin", "crowdsurf/tracker", "crowdsurf/loadtest"} {
		for _, line := range strings.Split(deps, "\n") {
			require.NotContains(t, line, banned, "the viewer build links %s", line)
		}
	}
}
