package peer

import (
	"context"
	"fmt"

	"github.com/pion/webrtc/v4"
)

// Publish runs the client side of publishing on pc: it makes an offer with
// ICE gathering complete (no trickle), hands it to publish (the server's
// side, e.g. sfu.Participant.Publish) and applies the answer. ctx bounds
// the gathering.
func Publish(ctx context.Context, pc *webrtc.PeerConnection,
	publish func(webrtc.SessionDescription) (webrtc.SessionDescription, error)) error {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return stepError("create offer", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return stepError("set local description", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return stepError("gather candidates", ctx.Err())
	}
	answer, err := publish(*pc.LocalDescription())
	if err != nil {
		return fmt.Errorf("peer: publish: %w", err)
	}
	if err := pc.SetRemoteDescription(answer); err != nil {
		return stepError("set remote description", err)
	}
	return nil
}
