package pipe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// controlClient sends signed control requests to other nodes and verifies
// their signed responses. It is immutable after construction and safe for
// concurrent use; every call is bounded by the caller's context (Pipes
// always passes one with RequestTimeout).
type controlClient struct {
	nodeID  string
	secret  []byte
	maxSkew time.Duration
	resolve func(nodeID string) (string, bool)
	http    *http.Client
	now     func() time.Time
}

// newOwnHTTPClient returns the HTTP client Pipes uses when the config has
// none: bounded dials and header waits, no redirects (a redirect would need
// re-signing and is never legitimate on the control channel). A want
// request legitimately waits up to wantTimeoutFactor x timeout for its
// answer, so the header wait allows that much.
func newOwnHTTPClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = timeout
	tr.ResponseHeaderTimeout = wantTimeoutFactor * timeout
	tr.MaxIdleConnsPerHost = 4
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{
		Transport: tr,
		Timeout:   (wantTimeoutFactor + 1) * timeout, // backstop; contexts are tighter
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// do POSTs in (JSON) to path on node and decodes a 2xx response into out.
// Non-2xx responses become *ControlError; transport failures and bad or
// unsigned 2xx responses are returned wrapped.
func (c *controlClient) do(ctx context.Context, node, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("cluster: control %s: encoding request: %w", path, err)
	}
	return c.send(ctx, http.MethodPost, node, path, body, out)
}

// send is do with an explicit method and raw body (nil for a GET).
func (c *controlClient) send(ctx context.Context, method, node, path string, body []byte, out any) error {
	base, ok := c.resolve(node)
	if !ok || base == "" {
		return fmt.Errorf("cluster: control %s: %w: %s", path, ErrNodeUnresolved, node)
	}
	var rd io.Reader = http.NoBody
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("cluster: control %s: node %s: %w", path, node, err)
	}
	if len(body) > 0 {
		req.Header.Set("Content-Type", contentTypeJSON)
	}
	req.Header.Set("Accept", contentTypeJSON)
	sig := signRequest(c.secret, req, c.nodeID, node, body, c.now())

	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cluster: control %s: node %s: %w", path, node, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxControlBody+1))
	if err != nil {
		return fmt.Errorf("cluster: control %s: node %s: reading response: %w", path, node, err)
	}
	if len(respBody) > maxControlBody {
		return fmt.Errorf("cluster: control %s: node %s: %w: response over %d bytes", path, node, ErrControlBadResponse, maxControlBody)
	}
	// Every answer, refusals included, must be signed by node for this
	// request: an unsigned or forged error is a failure of the request,
	// never the peer's verdict (a forged 409 must not tear down a link).
	if err := verifyResponse(c.secret, resp.Header, resp.StatusCode, sig, node, respBody, c.now(), c.maxSkew); err != nil {
		return fmt.Errorf("cluster: control %s: node %s: status %d: %w", path, node, resp.StatusCode, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e errorResponse
		_ = json.Unmarshal(respBody, &e) // best effort: the status alone is enough
		return &ControlError{Node: node, Status: resp.StatusCode, Code: e.Error, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(respBody, out); err != nil {
		return fmt.Errorf("cluster: control %s: node %s: %w: %v", path, node, ErrControlBadResponse, err)
	}
	return nil
}

// linkPath returns the control path of an action of sender on its link.
func linkPath(sender, action string) string {
	return controlPrefix + "links/" + url.PathEscape(sender) + "/" + action
}

// negotiate sends the controller's offer (req) to the answerer peer.
func (c *controlClient) negotiate(ctx context.Context, peer string, req negotiateRequest) (negotiateResponse, error) {
	var resp negotiateResponse
	if err := c.do(ctx, peer, linkPath(c.nodeID, "negotiate"), req, &resp); err != nil {
		return negotiateResponse{}, err
	}
	if resp.Answer.SDP == "" {
		return negotiateResponse{}, fmt.Errorf("cluster: negotiate with %s: %w: empty answer", peer, ErrControlBadResponse)
	}
	return resp, nil
}

// want sends the answerer's wanted set (req) to the controller peer and
// returns the outcome of the round that negotiated it.
func (c *controlClient) want(ctx context.Context, peer string, req wantRequest) (wantResponse, error) {
	var resp wantResponse
	if err := c.do(ctx, peer, linkPath(c.nodeID, "want"), req, &resp); err != nil {
		return wantResponse{}, err
	}
	return resp, nil
}

// closeLink tells peer that this node closed its side of a link (or, with
// req.Idle, asks whether it may).
func (c *controlClient) closeLink(ctx context.Context, peer string, req closeLinkRequest) (closeLinkResponse, error) {
	var resp closeLinkResponse
	if err := c.do(ctx, peer, linkPath(c.nodeID, "close"), req, &resp); err != nil {
		return closeLinkResponse{}, err
	}
	return resp, nil
}

// sendRoomEvent posts an opaque JSON event for room to node.
func (c *controlClient) sendRoomEvent(ctx context.Context, node, room string, body json.RawMessage) error {
	if !json.Valid(body) {
		return fmt.Errorf("cluster: room event: %w: body is not valid JSON", ErrControlBadRequest)
	}
	path := controlPrefix + "rooms/" + url.PathEscape(room) + "/events"
	var resp okResponse
	if err := c.do(ctx, node, path, body, &resp); err != nil {
		return err
	}
	if !resp.OK {
		return fmt.Errorf("cluster: room event to %s: %w: not ok", node, ErrControlBadResponse)
	}
	return nil
}

// ping asks node to prove it is alive: a signed GET /cluster/v1/ping whose
// signed answer names node.
func (c *controlClient) ping(ctx context.Context, node string) error {
	var resp pingResponse
	if err := c.send(ctx, http.MethodGet, node, controlPrefix+"ping", nil, &resp); err != nil {
		return err
	}
	if resp.Node != node {
		return fmt.Errorf("cluster: ping %s: %w: answered by %q", node, ErrControlBadResponse, resp.Node)
	}
	return nil
}
