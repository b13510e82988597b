package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"pushgo.dev/gateway/proto/secretbox"
)

// defaultSecretsKey is where pushgo serve keeps its secrets key when --secrets-key-file is not
// given, relative to the data directory.
var defaultSecretsKey = filepath.Join("keys", "secrets.key")

// withSecrets loads the key that seals secrets at rest (DESIGN.md §9.3) into the ingest and
// dispatch configs. pushgo serve without --secrets-key-file uses, and on its first start
// generates, <data-dir>/keys/secrets.key (directory 0700, file 0600); ingest and dispatch
// without it keep secrets in clear and warn at start. --secrets-old-key-files are keys still
// accepted for reading: after a rotation ingest seals what it reads with the new current key.
func withSecrets(c config, log *slog.Logger) (config, error) {
	if c.command != "serve" && c.command != "ingest" && c.command != "dispatch" {
		return c, nil
	}
	var old []string
	for p := range strings.SplitSeq(c.secretsOldKeyFiles, ",") {
		if p = strings.TrimSpace(p); p != "" {
			old = append(old, p)
		}
	}
	path := c.secretsKeyFile
	var box *secretbox.Box
	var err error
	switch {
	case path == "" && c.command == "serve":
		path = filepath.Join(c.dataDir, defaultSecretsKey)
		var created bool
		box, created, err = secretbox.LoadOrGenerate(path, old)
		if created {
			log.Info("secrets key generated; back it up with the data directory: sealed secrets cannot be read without it", "path", path)
		}
	case path == "" && len(old) > 0:
		return c, fmt.Errorf("--secrets-old-key-files needs --secrets-key-file (the current key)")
	case path == "":
		return c, nil
	default:
		box, err = secretbox.Load(path, old)
	}
	if err != nil {
		return c, fmt.Errorf("--secrets-key-file: %w", err)
	}
	log.Info("secrets at rest sealed", "key_file", path, "key_id", box.CurrentKeyID(), "old_keys", len(old))
	c.ingest.Secrets, c.dispatch.Secrets = box, box
	return c, nil
}
