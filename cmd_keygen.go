//go:build !viewer

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/proto"
)

func init() {
	register("keygen", "create an origin signing key (Ed25519) and print its public key", runKeygen)
}

func runKeygen(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	out := fs.String("out", "", "file to write the private key to (PEM PKCS#8, mode 0600); never overwritten (required)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: crowdsurf keygen --out FILE\n\n")
		fmt.Fprintf(w, "Creates the Ed25519 key an origin signs every chunk with and prints its public key on stdout.\n")
		fmt.Fprintf(w, "Viewers verify chunks against the public key, which travels in the watch link. Pass the file\n")
		fmt.Fprintf(w, "to `crowdsurf origin --key FILE`; keep it secret and keep it: a new key means new watch links.\n\n")
		printFlags(fs)
	}
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	if *out == "" {
		fs.Usage()
		return errors.New("--out FILE is required")
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s already exists; refusing to overwrite a key (move it away or choose another --out)", *out)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	if err := origin.WriteKey(*out, priv); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote private key to %s; public key:\n", *out)
	fmt.Println(proto.FormatPublicKey(pub))
	return nil
}
