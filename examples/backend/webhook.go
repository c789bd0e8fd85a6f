package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// VerifySignature reports whether header (X-Twi-Asr-Signature: "t=<unix seconds>,v1=<hex>") signs
// rawBody with secret (your user's webhook_secret, GET /v1/me) and is at most tolerance old. The
// signature is hex(HMAC-SHA256(secret, "<t>.<raw body>")): pass the body bytes exactly as received,
// never JSON you decoded and encoded again.
func VerifySignature(secret, header string, rawBody []byte, tolerance time.Duration, now time.Time) bool {
	if secret == "" || header == "" {
		return false
	}
	var timestamp string
	var signatures []string
	for _, part := range strings.Split(header, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch name {
		case "t":
			timestamp = value
		case "v1":
			signatures = append(signatures, value)
		}
	}
	t, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || len(signatures) == 0 {
		return false
	}
	age := now.Sub(time.Unix(t, 0))
	if age > tolerance || age < -tolerance { // a replayed old delivery (or a clock far off)
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "."))
	mac.Write(rawBody)
	expected := mac.Sum(nil)
	for _, s := range signatures {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, expected) { // constant time
			return true
		}
	}
	return false
}

// WebhookHandler is an http.Handler for the backend's deliveries: it answers 401 to a bad
// signature and 204 otherwise, after handing the verified body to handle. Deliveries are retried
// until a 2xx answer, so handle may see one X-Twi-Asr-Event-Id more than once: drop repeats.
func WebhookHandler(secret string, handle func(eventID string, body []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}
		if !VerifySignature(secret, r.Header.Get("X-Twi-Asr-Signature"), body, 5*time.Minute, time.Now()) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		handle(r.Header.Get("X-Twi-Asr-Event-Id"), body)
	})
}
