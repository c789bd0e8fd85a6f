package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"
)

func sign(secret string, t int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", t)
	mac.Write(body)
	return fmt.Sprintf("t=%d,v1=%s", t, hex.EncodeToString(mac.Sum(nil)))
}

func TestVerifySignature(t *testing.T) {
	secret := "whsec_0123"
	body := []byte(`{"type":"job.done","job":{"id":"job_1","text":"ɛ ɔ"}}`)
	now := time.Unix(1_800_000_000, 0)
	good := sign(secret, now.Unix(), body)
	// The same as Python's hmac.new(b"whsec_0123", b"1800000000." + body, "sha256").hexdigest().
	if want := "t=1800000000,v1=3f1faef786592acdc1c5a82bcec7310bbcd5419b75739bcc323dfb1e1277696d"; good != want {
		t.Fatalf("signed %s, want %s", good, want)
	}
	if !VerifySignature(secret, good, body, 5*time.Minute, now) {
		t.Fatal("a good signature was refused")
	}
	cases := map[string]struct {
		header string
		body   []byte
		secret string
		now    time.Time
	}{
		"other body":   {good, append(body, ' '), secret, now},
		"other secret": {good, body, "whsec_other", now},
		"too old":      {good, body, secret, now.Add(6 * time.Minute)},
		"no v1":        {fmt.Sprintf("t=%d", now.Unix()), body, secret, now},
		"garbage":      {"nonsense", body, secret, now},
		"empty":        {"", body, secret, now},
	}
	for name, c := range cases {
		if VerifySignature(c.secret, c.header, c.body, 5*time.Minute, c.now) {
			t.Errorf("%s: accepted", name)
		}
	}
	// Several v1 entries (a secret being rotated): any one matching is enough.
	two := fmt.Sprintf("t=%d,v1=%s,v1=%s", now.Unix(), "00", good[len("t=1800000000,v1="):])
	if !VerifySignature(secret, two, body, 5*time.Minute, now) {
		t.Error("a second matching v1 was refused")
	}
}
