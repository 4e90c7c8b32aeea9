package main

import (
	"encoding/json"
	"fmt"
	"io"
)

// capabilities is the JSON "--print-capabilities" prints, which libvirt
// reads to learn how to drive a virtio-fs back-end (QEMU's
// docs/interop/vhost-user.json, "Backend programs conventions").
type capabilities struct {
	Type     string   `json:"type"`
	Features []string `json:"features"`
}

// backendCapabilities lists only what ferryfs really does, as virtiofsd
// 1.13 does: "migrate-precopy" tells libvirt it may live-migrate a guest
// using the device (the state moves through VHOST_USER_SET_DEVICE_STATE_FD
// once memory is copied), "separate-options" that the flags are taken in
// their separate form (--shared-dir DIR, --cache MODE, ...), so libvirt
// need not fall back to -o.
var backendCapabilities = capabilities{
	Type:     "fs",
	Features: []string{"migrate-precopy", "separate-options"},
}

// printCapabilities writes backendCapabilities in virtiofsd's layout.
func printCapabilities(w io.Writer) error {
	out, err := json.MarshalIndent(backendCapabilities, "", "  ")
	if err != nil {
		return fmt.Errorf("encode capabilities: %w", err)
	}
	if _, err := fmt.Fprintf(w, "%s\n", out); err != nil {
		return fmt.Errorf("print capabilities: %w", err)
	}
	return nil
}
