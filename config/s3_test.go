package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestS3Config(t *testing.T) {
	f := newFixture(t)
	creds := f.write("creds", "# comment\n[other]\naws_access_key_id = NO\naws_secret_access_key = NO\n\n"+
		"[ftp]\naws_access_key_id = AKID\naws_secret_access_key = SECRET\naws_session_token = TOKEN\n")
	cfg := mustLoad(t, f.write("ftpsd.toml", `
[storage.s3]
endpoint = "https://s3.example.com:9000"
region = "eu-west-3"
path_style = true
credentials_file = "creds"
profile = "ftp"

[[user]]
name = "alice"
password_hash = "{hash}"
root = "s3://my-bucket/users/alice/"

[[user]]
name = "bob"
password_hash = "{hash}"
root = "s3://my-bucket"
`))
	s3 := cfg.Storage.S3
	if s3 == nil || s3.Host != "s3.example.com:9000" || !s3.Secure || s3.Region != "eu-west-3" || !s3.PathStyle ||
		s3.CredentialsFile != creds || s3.Profile != "ftp" {
		t.Fatalf("storage.s3 = %+v", s3)
	}
	if r := cfg.Users[0].S3; r == nil || r.Bucket != "my-bucket" || r.Prefix != "users/alice/" || cfg.Users[0].Root != "s3://my-bucket/users/alice/" {
		t.Fatalf("alice: %+v %q", r, cfg.Users[0].Root)
	}
	if r := cfg.Users[1].S3; r == nil || r.Bucket != "my-bucket" || r.Prefix != "" {
		t.Fatalf("bob: %+v", r)
	}
	cr, err := s3.Credentials()
	if err != nil || cr.AccessKey != "AKID" || cr.SecretKey != "SECRET" || cr.SessionToken != "TOKEN" {
		t.Fatalf("credentials %+v %v", cr, err)
	}
	if strings.Contains(cr.Source, "SECRET") {
		t.Fatal("source names the secret")
	}

	// Plain http is taken from the scheme.
	cfg = mustLoad(t, f.write("plain.toml", "[storage.s3]\nendpoint = \"http://127.0.0.1:8333\"\npath_style = true\n"+oneUser))
	if cfg.Storage.S3.Secure || cfg.Storage.S3.Host != "127.0.0.1:8333" {
		t.Fatalf("http endpoint: %+v", cfg.Storage.S3)
	}
}

func TestS3Credentials(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c")
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	for _, c := range []struct{ body, profile, msg string }{
		{"[default]\naws_access_key_id = A\n", "default", "needs aws_access_key_id and aws_secret_access_key"},
		{"[x]\naws_access_key_id = A\naws_secret_access_key = B\n", "default", "no [default] profile"},
		{"[default]\njunk\n", "default", "line 2"},
	} {
		_, err := (&S3{CredentialsFile: write(c.body), Profile: c.profile}).Credentials()
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: %v, want %q", c.body, err, c.msg)
		}
	}
	_, err := (&S3{CredentialsFile: filepath.Join(dir, "missing"), Profile: "default"}).Credentials()
	if err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("missing file: %v", err)
	}
	// Unreadable (even for root): a directory.
	if _, err := (&S3{CredentialsFile: dir, Profile: "default"}).Credentials(); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("unreadable file: %v", err)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, err := (&S3{}).Credentials(); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("empty environment: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "EA")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "ES")
	if cr, err := (&S3{}).Credentials(); err != nil || cr.AccessKey != "EA" || cr.SecretKey != "ES" || cr.Source != "environment" {
		t.Errorf("environment: %+v %v", cr, err)
	}
}
