package origin

import (
	"context"
	"net"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker/registrar"
)

// registerInterval is well inside the tracker's stream time-to-live (proto.TrackerStreamTTL), so
// one lost registration never makes a live stream disappear from the swarm.
const registerInterval = 5 * time.Second

// registerStreams keeps every stream whose mesh root runs registered at the tracker (over HTTP
// with TrackerURL, or straight into NATS with NATSURL, over one connection), so peers learn the
// origin's QUIC and HTTP addresses from their announce answers. Every registration is signed
// afresh with the stream's key: the tracker takes only registrations its key signed, each newer
// than the last.
func (o *Origin) registerStreams(ctx context.Context, mesh *meshSeeder) {
	var (
		client *trackerclient.Client
		nats   *registrar.Registrar
	)
	if o.cfg.TrackerURL != "" {
		client = &trackerclient.Client{BaseURL: o.cfg.TrackerURL, RegisterToken: o.cfg.RegisterToken, HTTPClient: o.cfg.TrackerHTTPClient}
	} else if o.cfg.NATSURL != "" {
		var err error
		if nats, err = registrar.New(registrar.Config{NATSURL: o.cfg.NATSURL, Key: o.cfg.Key}); err != nil {
			o.log.Error("streams cannot be registered over NATS", "err", err)
			return
		}
		defer nats.Close()
	}
	// registeredOK holds each stream's last outcome, so the log tells only of changes.
	registeredOK := map[string]bool{}
	t := time.NewTicker(registerInterval)
	defer t.Stop()
	for {
		for _, si := range o.Streams() {
			addr, ok := mesh.meshAddr(si.Name)
			if !ok || !si.Live {
				continue
			}
			reg := proto.StreamRegistration{
				Name:              si.Name,
				QUICAddr:          o.advertisedAddr(addr),
				HTTPURL:           o.PublicHTTPURL(),
				Stripes:           o.cfg.Stripes,
				SegmentDurationMs: o.cfg.SegmentDuration.Milliseconds(),
				BitrateBps:        int64(si.BitrateBps),
			}
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			var err error
			if client != nil {
				reg.Sign(o.cfg.Key, time.Now())
				err = client.RegisterStream(rctx, reg)
			} else if nats != nil {
				err = nats.Register(rctx, reg) // signs it
			}
			cancel()
			was, seen := registeredOK[si.Name]
			switch {
			case err != nil && ctx.Err() == nil && (!seen || was):
				o.log.Warn("stream not registered at the tracker; peers cannot find the origin until it is",
					"stream", si.Name, "err", err)
			case err == nil && (!seen || !was):
				o.log.Info("stream registered at the tracker", "stream", si.Name, "quic", reg.QUICAddr, "http", reg.HTTPURL)
			}
			if ctx.Err() == nil {
				registeredOK[si.Name] = err == nil
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-mesh.started:
		}
	}
}

// advertisedAddr is the mesh address peers dial: the socket's port on Config.Advertise, else on
// the socket's own host when it is bound to one (a given address, a simulated network's host),
// else on the HTTP side's advertised host.
func (o *Origin) advertisedAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); o.cfg.Advertise == "" && ip != nil && !ip.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort(o.advertiseHost(), port)
}

// PublicHTTPURL is the base URL peers use for the CDN fallback.
func (o *Origin) PublicHTTPURL() string {
	if o.cfg.PublicHTTPURL != "" {
		return o.cfg.PublicHTTPURL
	}
	_, port, _ := net.SplitHostPort(o.HTTPAddr().String())
	return "http://" + net.JoinHostPort(o.advertiseHost(), port)
}

// advertiseHost is Config.Advertise, else the host the HTTP listener is bound to when that is a
// specific address, else loopback (fine on one machine; other machines need --advertise).
func (o *Origin) advertiseHost() string {
	if o.cfg.Advertise != "" {
		return o.cfg.Advertise
	}
	host, _, err := net.SplitHostPort(o.HTTPAddr().String())
	if err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			return host
		}
	}
	return "127.0.0.1"
}
