package main

import (
	"flag"
	"fmt"
	"io"

	"pushgo.dev/gateway/cmd/pushgo/internal/deploygen"
)

// deploySecrets is `pushgo deploy-secrets [--dir D]`: the CA, NATS certificates, users and
// configuration of deploy/compose.yaml (package deploygen). It returns the exit code.
func deploySecrets(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("pushgo deploy-secrets", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "deploy/generated", "directory to write into (kept secrets and certificates are reused)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := deploygen.Generate(*dir); err != nil {
		fmt.Fprintln(stderr, "pushgo deploy-secrets:", err)
		return 1
	}
	fmt.Fprintln(stderr, "pushgo deploy-secrets: wrote", *dir)
	return 0
}
