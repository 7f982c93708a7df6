package loadtest

import (
	"time"
)

// buildReport turns the counters at the start, the half and the end of the measured interval, the
// per-second series and the players' summaries into the report.
func (lt *LoadTest) buildReport(base, mid, last totals, series []SecondSample, depths []DepthBin, viewers []*viewer) *Report {
	cfg := lt.cfg
	r := &Report{
		Peers:          cfg.Peers,
		DurationS:      last.at.Sub(base.at).Seconds(),
		BitrateBps:     cfg.BitrateBps,
		Mode:           cfg.Mode,
		Parameters:     cfg.parameters(),
		Machine:        thisMachine(),
		Series:         series,
		DepthHistogram: depths,
		Notes:          []string{},
	}

	r.StreamBytes = last.stream - base.stream
	r.Detail.OriginHTTPBytes = last.http - base.http
	r.Detail.OriginQUICBytes = last.quic - base.quic
	r.Detail.OriginHTTPPlaylistBytes = last.httpPlaylist - base.httpPlaylist
	r.Detail.OriginHTTPSegmentBytes = last.httpSegment - base.httpSegment
	r.Detail.OriginHTTPChunkBytes = last.httpChunk - base.httpChunk
	r.OriginEgressBytes = r.Detail.OriginHTTPBytes + r.Detail.OriginQUICBytes
	r.OriginCopies = ratio(float64(r.OriginEgressBytes), float64(r.StreamBytes))

	r.Detail.BytesFromPeers = last.fromPeers - base.fromPeers
	r.Detail.BytesFromOrigin = last.fromOrigin - base.fromOrigin
	r.Detail.BytesFromHTTP = last.fromHTTP - base.fromHTTP
	r.Detail.BytesFromHTTPJoining = last.fromHTTPJoining - base.fromHTTPJoining
	received := float64(r.Detail.BytesFromPeers + r.Detail.BytesFromOrigin)
	r.Offload = ratio(float64(r.Detail.BytesFromPeers), received)
	r.FallbackShare = ratio(float64(r.Detail.BytesFromHTTP), received)
	r.Detail.ChunksEmitted = lt.emits.chunks()
	r.SecondHalf = lt.secondHalfReport(base, mid, last)

	delivery := lt.delivery.sorted()
	r.DeliveryLatencyMs = quantilesOf(delivery)
	r.DeliveryLatencyCDF = cdf(delivery, 100)

	live := lt.liveLatency.sorted()
	r.LiveLatencyMs = LiveLatency{P50: percentile(live, 0.50), P95: percentile(live, 0.95), Samples: len(live)}

	var startups []float64
	var parseErrors int
	for _, v := range viewers {
		r.Detail.PeersJoined++
		if v.gone() && v.leftBefore(last.at) {
			r.Detail.PeersLeft++
		}
		s := v.player.Summary()
		if s.Started {
			startups = append(startups, s.StartupMs)
			r.Detail.PlayersStarted++
		}
		r.Stalls += s.Stalls
		r.Detail.StallMs += s.StallMs
		r.Detail.WatchedMs += s.WatchedMs
		r.SegmentsPlayed += s.Segments
		r.SegmentsMissing += v.segments.missing()
		r.Detail.PlayerErrors += s.Errors
		r.Detail.PlayerParseErrors += s.ParseErrors
		r.Detail.PlayerTSErrors += s.TimestampErrors
		r.Detail.PlayerFetchErrors += s.FetchErrors
		r.Detail.PlayerSequenceErrs += s.SequenceErrors
		parseErrors += s.ParseErrors + s.TimestampErrors
		if v.node != nil {
			ns := v.node.Stats()
			r.Detail.ChunksRejected += ns.ChunksRejected
			r.Detail.SegmentsWithFallbk += ns.SegmentsWithFallback
			r.Detail.SegmentsAbandoned += ns.SegmentsAbandoned
			r.Detail.MeshDials += ns.Dials
			r.Detail.MeshDialsFailed += ns.DialsFailed
			r.Detail.MeshConnsUp += ns.ConnsUp
			r.Detail.MeshConnsDown += ns.ConnsDown
			r.Detail.MeshParentsSilent += ns.ParentsSilent
			r.Detail.MeshEvicted += ns.Evicted
			r.Detail.MeshLoopLags += ns.LoopLags
			r.Detail.MeshRequests += ns.Requests
			r.Detail.MeshPushesDropped += ns.PushesDropped
			r.Detail.MeshRequestsOverShare += ns.RequestsOverShare
		}
	}
	startups = sortedCopy(startups)
	r.StartupMs = StartupQuantiles{
		P50: percentile(startups, 0.50), P95: percentile(startups, 0.95), Max: percentile(startups, 1), Samples: len(startups),
	}
	r.StallRatio = ratio(r.Detail.StallMs, r.Detail.WatchedMs)

	// Corrupt bytes are estimated from counts: rejected chunks at the mean chunk size, segments
	// that failed the players' MPEG-TS checks at the mean segment size.
	if chunks := r.Detail.ChunksEmitted; chunks > 0 {
		meanChunk := float64(lt.bc.Origin.Stats().BytesProduced) / float64(chunks)
		meanSegment := float64(cfg.BitrateBps) / 8 * cfg.Segment.Seconds()
		r.CorruptBytes = int64(float64(r.Detail.ChunksRejected)*meanChunk + float64(parseErrors)*meanSegment)
	}

	if rs, ok := lt.bc.Origin.RootStats(streamName); ok {
		r.Detail.RootLoopLags = rs.LoopLags
		r.Detail.RootPublishDropped = rs.PublishDropped
		r.Detail.RootPushesDropped = rs.PushesDropped
		r.Detail.RootRequestsServed = rs.RequestsServed
		r.Detail.RootRequestsRefused = rs.RequestsRefused
		r.Detail.RootRequestsOverShare = rs.RequestsOverShare
	}
	if lt.mesh != nil {
		st := lt.mesh.stats()
		r.Detail.SimPacketsSent = st.PacketsSent
		r.Detail.SimBytesSent = st.BytesSent
		r.Detail.SimPacketsDropped = st.PacketsDropped
		r.Detail.SimDroppedQueue = st.DroppedQueue
		r.Detail.SimDroppedLoss = st.DroppedLoss
		r.Detail.SimDroppedRcvBuffer = st.DroppedReceiveBuffer
	}
	if cfg.Source == SourceTestcard {
		// The test card's clip sets the bit rate, not --bitrate.
		r.BitrateBps = int64(ratio(float64(r.StreamBytes)*8, r.DurationS))
		r.Parameters.Bitrate = "testcard clip (" + FormatRate(r.BitrateBps/1000*1000) + " measured)"
	}
	if cfg.Mode == ModeCDN {
		r.Notes = append(r.Notes, "cdn mode: every player reads the origin's HTTP endpoint; offload and delivery latency do not apply")
	}
	return r
}

// secondHalfReport is the report's measures from mid (half the interval) to last; zero when the run
// ended before its half.
func (lt *LoadTest) secondHalfReport(base, mid, last totals) SecondHalf {
	if !mid.at.After(base.at) || last.stream <= mid.stream {
		return SecondHalf{}
	}
	late := lt.deliveryLate.sorted()
	pulled := lt.deliveryLatePulled.sorted()
	return SecondHalf{
		FromS:                   mid.at.Sub(base.at).Seconds(),
		OriginCopies:            ratio(float64(last.http-mid.http+last.quic-mid.quic), float64(last.stream-mid.stream)),
		Offload:                 ratio(float64(last.fromPeers-mid.fromPeers), float64(last.fromPeers-mid.fromPeers+last.fromOrigin-mid.fromOrigin)),
		Stalls:                  last.stalls - mid.stalls,
		Cores:                   (last.cpu - mid.cpu).Seconds() / last.at.Sub(mid.at).Seconds(),
		DeliveryLatencyMs:       quantilesOf(late),
		PulledShare:             ratio(float64(len(pulled)), float64(len(late))),
		PulledDeliveryLatencyMs: quantilesOf(pulled),
	}
}

func (v *viewer) leftBefore(t time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return !v.left.IsZero() && v.left.Before(t)
}
