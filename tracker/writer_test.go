package tracker

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// A stored write gives the view's record its revision (so the watcher's echo is skipped); a
// failed one is tried again only while the view still holds that very record.
func TestWriteResultsSetRevisionsAndRetryOnlyCurrentRecords(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	v := newView(nil, nil, cfg, newMetrics(reg))
	id := swarmID{name: "live", key: testKey}
	now := time.Unix(1000, 0)
	recOf := func(i, free int) (proto.PeerRecord, uint64) {
		a := testAnnounce("live", i)
		a.FreeSlots = free
		rec := proto.PeerRecord{PeerState: a.PeerState, SourceIP: "127.0.0.1"}
		return rec, fingerprint(rec)
	}
	write := func(rec proto.PeerRecord, fp uint64) pendingWrite {
		return pendingWrite{key: peerKey(id, rec.PeerID), id: id, peerID: rec.PeerID, fp: fp}
	}
	stored, storedFP := recOf(1, 1)
	failed, failedFP := recOf(2, 1)
	superseded, supersededFP := recOf(3, 1)
	v.putLocal(id, stored, storedFP, now)
	v.putLocal(id, failed, failedFP, now)
	v.putLocal(id, superseded, supersededFP, now)
	newer, newerFP := recOf(3, 2) // the peer announced again before its write came back
	v.putLocal(id, newer, newerFP, now)

	boom := errors.New("no responders")
	retry := v.stored([]writeResult{
		{pendingWrite: write(stored, storedFP), rev: 7},
		{pendingWrite: write(failed, failedFP), err: boom},
		{pendingWrite: write(superseded, supersededFP), err: boom},
	}, now)
	require.Equal(t, []pendingWrite{write(failed, failedFP)}, retry)
	s := v.swarms[id]
	require.Equal(t, uint64(7), s.meta[s.index[stored.PeerID]].rev)
	require.Equal(t, uint64(7), v.wroteRev)
	require.Equal(t, 2.0, counterValue(t, v.metrics.kvWriteErrors))

	// The watcher's echo of the stored write changes nothing.
	v.putPeer(id, stored, storedFP, 7, now.Add(time.Second))
	require.Equal(t, now, s.meta[s.index[stored.PeerID]].created)
}
