//go:build !viewer

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/tracker"
)

func init() {
	register("tracker", "swarm membership and neighbour choice (HTTP API, state in NATS)", runTracker)
}

func runTracker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tracker", flag.ContinueOnError)
	httpAddr := fs.String("http", ":7070", "`ADDR` the HTTP API listens on")
	natsURL := fs.String("nats", "",
		"`URL` of a NATS server or cluster with JetStream that holds the swarm state; empty starts an\n"+
			"embedded NATS server on 127.0.0.1 at a random port and logs its URL")
	dataDir := fs.String("data", "",
		"`DIR` where the embedded NATS server keeps its state, so registered streams survive a\n"+
			"restart; empty keeps it in memory; ignored with --nats")
	replicas := fs.Int("nats-replicas", 1, "servers of the --nats cluster that hold each bucket; 3 on a three-node cluster keeps the swarm when a node goes down")
	peerTTL := fs.Duration("peer-ttl", 10*time.Second, "how long a peer stays in the swarm after its last announce")
	interval := fs.Duration("announce-interval", 3*time.Second, "how often peers are told to announce; must be shorter than --peer-ttl")
	neighbours := fs.Int("neighbours", 8, "neighbour candidates per announce answer")
	rateLimit := fs.Float64("rate-limit", 20, "API requests per second allowed per source IP (burst twice that); 0 turns the limit off")
	registerToken := fs.String("register-token", "",
		"`TOKEN` required as a bearer token to register streams over HTTP (origins send it with\n"+
			"their --register-token); empty allows anyone with a signing key. Registrations are\n"+
			"signed by each stream's key either way")
	trustProxy := fs.String("trust-proxy-header", "",
		"`NAME` of a header (e.g. X-Forwarded-For) whose last address is the client's; set it only\n"+
			"behind a proxy you run that sets it: announced addresses and limits follow it")
	perHost := fs.Int("max-peers-per-host", 8, "peers of one host (IP) listed in one swarm; more are answered but never handed out; -1 = no bound;\nloopback addresses are exempt")
	observe := fs.String("observe", "auto", "UDP `ADDRS` (ADDR1,ADDR2) of the observer that tells peers their address behind their NAT and\n"+
		"carries the tracker's punch orders; auto = the --http host on its port and the next one; - = none\n"+
		"(then peers behind NATs are handed out at their announced address and never punch)")
	dashboardAddrs := fs.Bool("dashboard-addrs", false, "show peers' and the origin's addresses on the dashboard (GET /v1/swarm/NAME); off by default: anyone can read it")
	logs := addLogFlags(fs, "info", "v", "debug")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: crowdsurf tracker [flags]\n\n")
		fmt.Fprintf(out, "Runs the tracker: peers announce to it over HTTP and get neighbour candidates back;\n")
		fmt.Fprintf(out, "origins register their streams over NATS or HTTP. Several trackers on one NATS\n")
		fmt.Fprintf(out, "give the same answers.\n\n")
		printFlags(fs)
	}
	// The variables these two flags had before every flag had CROWDSURF_<FLAG>.
	oldEnv := map[string]string{"http": "CROWDSURF_TRACKER_HTTP", "register-token": "CROWDSURF_TRACKER_REGISTER_TOKEN"}
	if err := parseFlags(fs, args, oldEnv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	logger, err := logs.logger(os.Stderr)
	if err != nil {
		return err
	}
	limit := rate.Limit(*rateLimit)
	burst := int(2 * *rateLimit)
	if *rateLimit <= 0 {
		limit, burst = rate.Inf, 1
	}
	observers, err := tracker.ObserverAddrsFor(*observe, *httpAddr)
	if err != nil {
		return err
	}
	t, err := tracker.New(tracker.Config{
		ObserverAddrs:    observers,
		HTTPAddr:         *httpAddr,
		NATSURL:          *natsURL,
		DataDir:          *dataDir,
		Replicas:         *replicas,
		Logger:           logger,
		PeerTTL:          *peerTTL,
		AnnounceInterval: *interval,
		NeighbourCount:   *neighbours,
		RateLimit:        limit,
		RateBurst:        max(burst, 1),
		RegisterToken:    *registerToken,
		TrustProxyHeader: *trustProxy,
		MaxPeersPerHost:  *perHost,
		DashboardAddrs:   *dashboardAddrs,
	})
	if err != nil {
		return err
	}
	return t.Run(ctx)
}
