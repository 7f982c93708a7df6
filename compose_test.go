package main

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDockerComposeFileIsValid runs Debian's docker-compose over docker-compose.yml: `config`
// parses and validates the file (no Docker engine needed) and prints the resolved services.
func TestDockerComposeFileIsValid(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose not found: `make deps` installs Debian's docker-compose package")
	}
	cmd := exec.Command(bin, "-f", "docker-compose.yml", "config")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "docker-compose config: %s", stderr.String())
	for _, svc := range []string{"nats1:", "nats2:", "nats3:", "tracker1:", "tracker2:", "origin:", "peer1:", "peer2:", "peer3:"} {
		require.Contains(t, stdout.String(), svc, "service %s missing from the resolved file", svc)
	}
	require.Contains(t, stdout.String(), "--testcard=testcard", "the origin should publish the test card")
	require.Contains(t, stdout.String(), "--cluster_name", "the NATS nodes should form one cluster")
	require.Contains(t, stdout.String(), "--nats-replicas", "the trackers should replicate the buckets over the cluster")
}
