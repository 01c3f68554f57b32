package server

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ftpsd/ftpsd/config"
	"github.com/ftpsd/ftpsd/driver"
)

// staleUploadAge is how old an incomplete multipart upload must be for
// the start-up sweep to abort it. Nodes sharing a bucket start at any
// time, so "older than this start" would abort their live uploads; a day
// is longer than any upload ftpsd keeps open (data_timeout ends stalled
// ones). A bucket lifecycle rule (AbortIncompleteMultipartUpload) does the
// same on the store's side.
const staleUploadAge = 24 * time.Hour

// newS3Client reads the credentials (the caller runs before privileges
// are dropped, so the file may be root's alone) and prepares the client.
func newS3Client(c *config.S3, log *slog.Logger) (*driver.S3Client, error) {
	if c == nil {
		return nil, nil
	}
	cr, err := c.Credentials()
	if err != nil {
		return nil, err
	}
	client, err := driver.NewS3Client(driver.S3Config{Host: c.Host, Secure: c.Secure, Region: c.Region,
		PathStyle: c.PathStyle, AccessKey: cr.AccessKey, SecretKey: cr.SecretKey, Token: cr.SessionToken}, log)
	if err != nil {
		return nil, err
	}
	attrs := []any{"endpoint", c.Endpoint, "region", c.Region, "path_style", c.PathStyle, "credentials", cr.Source}
	if !c.Secure {
		log.Warn("object storage over plain HTTP: requests are signed but file contents travel unencrypted", attrs...)
	} else {
		log.Info("object storage", attrs...)
	}
	return client, nil
}

// reloadS3 keeps the client made at start: its credentials could not be
// read again after the privilege drop. A reload that needs object storage
// the server was not started with is refused; changed settings wait for a
// restart.
func (s *Server) reloadS3(cfg *config.Config) error {
	needs := false
	for _, u := range cfg.Users {
		needs = needs || u.S3 != nil
	}
	if needs && s.s3 == nil {
		return fmt.Errorf("users with s3:// roots need [storage.s3], which this server was not started with: restart ftpsd")
	}
	if old, now := s.cfg.Storage.S3, cfg.Storage.S3; old != nil && now != nil && *old != *now {
		s.log.Warn("[storage.s3] changed: the new settings apply after a restart (credentials are read only at start)")
	}
	return nil
}

// sweepUploads aborts multipart uploads that an earlier ftpsd left behind
// (killed mid-upload) under each S3 user's prefix. Runs in the background.
func (s *Server) sweepUploads(users []config.User) {
	seen := map[config.S3Root]bool{}
	for _, u := range users {
		if u.S3 == nil || seen[*u.S3] || s.s3 == nil {
			continue
		}
		seen[*u.S3] = true
		n, err := s.s3.Fs(u.S3.Bucket, u.S3.Prefix, driver.S3Options{}).SweepUploads(time.Now().Add(-staleUploadAge))
		if err != nil {
			s.log.Warn("sweep of incomplete S3 uploads failed", "root", u.Root, "err", err)
		} else if n > 0 {
			s.log.Info("aborted incomplete S3 uploads left by an earlier stop", "root", u.Root, "uploads", n)
		}
	}
}
