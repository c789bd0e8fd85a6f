// Transcribe one file through the twi-asr backend with Go's standard library: submit, wait,
// download the SRT.
//
//	cd examples/backend && TWI_ASR_KEY=twk_... go run . ../hello.wav [out.srt]
//
// TWI_ASR_KEY      your API key (`twi-asr backend users create NAME --json` prints one)
// TWI_ASR_BACKEND  the backend's URL (default http://localhost:8000)
// TWI_ASR_TIMEOUT  seconds to wait for the job (default 3600)
//
// webhook.go in this folder has VerifySignature, the check of the X-Twi-Asr-Signature header.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Job is the part of the backend's job object this program reads.
type Job struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Text   string `json:"text"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Client talks to the backend with one API key.
type Client struct {
	Base string
	Key  string
	HTTP *http.Client
}

// apiError turns a non-2xx answer into an error carrying the API's code and message.
func apiError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error.Code != "" {
		return fmt.Errorf("HTTP %d: %s: %s", resp.StatusCode, body.Error.Code, body.Error.Message)
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))
}

// do sends req with the key and returns the response of a 2xx answer (the caller closes it).
func (c *Client) do(req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+c.Key)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	return resp, nil
}

func (c *Client) getJSON(path string, out interface{}) error {
	req, err := http.NewRequest(http.MethodGet, c.Base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// Submit uploads the file as multipart/form-data (streamed, not held in memory) to POST /v1/jobs.
func (c *Client) Submit(path string, fields map[string]string) (*Job, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	form := multipart.NewWriter(pw)
	go func() {
		for name, value := range fields {
			if err := form.WriteField(name, value); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		part, err := form.CreateFormFile("file", filepath.Base(path))
		if err == nil {
			_, err = io.Copy(part, f)
		}
		if err == nil {
			err = form.Close()
		}
		pw.CloseWithError(err) // nil: a normal end of the body
	}()
	req, err := http.NewRequest(http.MethodPost, c.Base+"/v1/jobs", pr)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", form.FormDataContentType())
	req.Header.Set("Idempotency-Key", randomKey()) // a retried POST then returns the same job
	resp, err := c.do(req)
	if err != nil {
		pr.CloseWithError(err) // stop the writer goroutine if the upload was cut short
		return nil, err
	}
	defer resp.Body.Close()
	var job Job
	if err := json.NewDecoder(resp.Body).Decode(&job); err != nil {
		return nil, err
	}
	return &job, nil
}

// Wait polls GET /v1/jobs/{id} until the job is done, failed or cancelled, or timeout passes.
func (c *Client) Wait(job *Job, timeout time.Duration) (*Job, error) {
	deadline := time.Now().Add(timeout)
	for job.Status == "queued" || job.Status == "running" {
		if time.Now().After(deadline) {
			return job, fmt.Errorf("job %s still %s after %s", job.ID, job.Status, timeout)
		}
		time.Sleep(time.Second)
		var next Job
		if err := c.getJSON("/v1/jobs/"+job.ID, &next); err != nil {
			return job, err
		}
		job = &next
	}
	return job, nil
}

// Transcript downloads GET /v1/jobs/{id}/transcript in one format (txt, json, srt, vtt, tsv) to w.
func (c *Client) Transcript(id, format string, w io.Writer) error {
	req, err := http.NewRequest(http.MethodGet, c.Base+"/v1/jobs/"+id+"/transcript?format="+format, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

func randomKey() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b)
}

func run(args []string) error {
	key := os.Getenv("TWI_ASR_KEY")
	if key == "" || len(args) < 1 {
		return fmt.Errorf("usage: TWI_ASR_KEY=twk_... go run . AUDIO_FILE [OUT.srt]")
	}
	base := strings.TrimRight(os.Getenv("TWI_ASR_BACKEND"), "/")
	if base == "" {
		base = "http://localhost:8000"
	}
	timeout := time.Hour
	if s := os.Getenv("TWI_ASR_TIMEOUT"); s != "" {
		seconds, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("TWI_ASR_TIMEOUT=%q: not a number of seconds", s)
		}
		timeout = time.Duration(seconds * float64(time.Second))
	}
	file := args[0]
	out := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)) + ".srt"
	if len(args) > 1 {
		out = args[1]
	}
	// No overall client timeout: an upload of a long recording may take a while.
	c := &Client{Base: base, Key: key, HTTP: &http.Client{}}

	// 1. Submit. Add "language": "en", "word_timestamps": "true", "webhook_url": "https://..." as needed.
	job, err := c.Submit(file, map[string]string{})
	if err != nil {
		return fmt.Errorf("submitting %s: %w", file, err)
	}
	fmt.Fprintf(os.Stderr, "submitted %s (%s)\n", job.ID, file)

	// 2. Wait (a webhook saves the polling).
	start := time.Now()
	job, err = c.Wait(job, timeout)
	if err != nil {
		return err
	}
	if job.Status != "done" {
		if job.Error != nil {
			return fmt.Errorf("job %s %s: %s: %s", job.ID, job.Status, job.Error.Code, job.Error.Message)
		}
		return fmt.Errorf("job %s %s", job.ID, job.Status)
	}
	fmt.Fprintf(os.Stderr, "done in %.1f s: %s\n", time.Since(start).Seconds(), job.Text)

	// 3. Download the SRT.
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := c.Transcript(job.ID, "srt", f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", out)
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
