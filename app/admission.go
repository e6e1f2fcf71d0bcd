package app

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// minPublishBitrate is the smallest accepted --max-publish-bitrate (the
// engine's own minimum).
const minPublishBitrate = 100_000

// errBitrate is the reason of a bad --max-publish-bitrate.
var errBitrate = errors.New("must be a bitrate of at least 100k such as 8M, 2500k or 4000000, or off")

// parseBitrate parses a bitrate in bit/s: a positive number, optionally
// with a k or M suffix (decimal: 1k = 1000), or "off" (-1: no cap).
func parseBitrate(s string) (int, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		return -1, nil
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1e6, s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f*mult < minPublishBitrate || f*mult > 1e10 {
		return 0, errBitrate
	}
	return int(f * mult), nil
}

// validateAdmission checks the admission and abuse limits of c (0 means
// the package default).
func (c *Config) validateAdmission() error {
	if c.MaxConns < 0 {
		return flagError("max-conns", fmt.Sprint(c.MaxConns), errPositive)
	}
	if c.MaxConnsPerIP < 0 {
		return flagError("max-conns-per-ip", fmt.Sprint(c.MaxConnsPerIP), errPositive)
	}
	if c.JoinTimeout < 0 {
		return flagError("join-timeout", c.JoinTimeout.String(), errDuration)
	}
	if c.MaxPublishBitrate > 0 && c.MaxPublishBitrate < minPublishBitrate {
		return flagError("max-publish-bitrate", fmt.Sprint(c.MaxPublishBitrate), errBitrate)
	}
	return nil
}
