package main

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/client"

	"github.com/khw-dev/khw/plugins/sdk"
)

// pull pulls image and waits until dockerd has it, reporting the layers'
// progress (at most a line every 2 s) and failing with the registry's own
// message.
func pull(ctx context.Context, cl *client.Client, image string, progress sdk.Progress) error {
	progress("pulling " + image)
	resp, err := cl.ImagePull(ctx, image, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	last := time.Now()
	for m, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return err
		}
		if m.Error != nil {
			return fmt.Errorf("%s", m.Error.Message)
		}
		if time.Since(last) > 2*time.Second && m.Status != "" {
			line := "pulling " + image + ": " + m.Status
			if m.ID != "" {
				line += " " + m.ID
			}
			if p := m.Progress; p != nil && p.Total > 0 {
				line += fmt.Sprintf(" (%d%%)", p.Current*100/p.Total)
			}
			progress(line)
			last = time.Now()
		}
	}
	return nil
}
