package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
)

// S3 is the [storage.s3] table: the object store that users whose root is
// s3://bucket/prefix keep their files in. It holds no secret: the keys come
// from CredentialsFile or the environment (Credentials), read at start.
type S3 struct {
	Endpoint  string // as written, e.g. "https://s3.eu-central-1.amazonaws.com"
	Host      string // host[:port] of Endpoint
	Secure    bool   // TLS, from the endpoint's scheme (https)
	Region    string // "" lets the client ask the server
	PathStyle bool   // bucket in the path (MinIO, SeaweedFS, Ceph) rather than in the host name
	// CredentialsFile is an AWS shared-credentials file; "" means the
	// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
	CredentialsFile string
	Profile         string // section of CredentialsFile; default "default"
}

// S3Root is a user root on object storage: every key of the user starts
// with Prefix ("" or ending in "/").
type S3Root struct {
	Bucket string
	Prefix string
}

// S3Credentials are the keys ftpsd signs its S3 requests with.
type S3Credentials struct {
	AccessKey, SecretKey, SessionToken string
	Source                             string // where they came from, for logs (never the keys)
}

// secretKeys are keys people write into [storage.s3] by habit; their values
// must not live in a config file that is often world-readable and versioned.
var secretKeys = []string{"access_key", "secret_key", "access_key_id", "secret_access_key",
	"aws_access_key_id", "aws_secret_access_key", "session_token", "aws_session_token"}

// bucketName is S3's rule for new buckets (3-63 characters of lower-case
// letters, digits, dots and hyphens, starting and ending with a letter or
// digit); names like IP addresses are refused below.
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func (d *decoder) s3(storage *table, s *Storage) {
	v, ok := storage.get("s3")
	if !ok {
		return
	}
	t := &table{d: d, prefix: storage.key("s3"), name: "storage.s3"}
	m, ok := v.(map[string]any)
	if !ok {
		d.errorf(t.prefix, "must be a table ([storage.s3]), not %s", typeName(v))
		return
	}
	t.m = m
	c := &S3{Profile: "default"}
	if t.str(&c.Endpoint, "endpoint") {
		host, secure, err := parseEndpoint(c.Endpoint)
		if err != nil {
			d.errorf(t.key("endpoint"), "%v", err)
		}
		c.Host, c.Secure = host, secure
	} else if _, given := m["endpoint"]; !given {
		d.errorf(t.key("endpoint"), `missing: the S3 service's URL, such as "https://s3.eu-central-1.amazonaws.com"`)
	}
	t.str(&c.Region, "region")
	t.boolean(&c.PathStyle, "path_style")
	if h, _, err := net.SplitHostPort(c.Host); c.Host != "" && !c.PathStyle {
		if err != nil {
			h = c.Host
		}
		if net.ParseIP(strings.Trim(h, "[]")) != nil || h == "localhost" {
			d.errorf(t.key("path_style"), "an endpoint at an IP address (or localhost) has no bucket host names: set path_style = true")
		}
	}
	t.path(&c.CredentialsFile, "credentials_file", true)
	if t.str(&c.Profile, "profile") && c.Profile == "" {
		d.errorf(t.key("profile"), "must not be empty (leave it out for \"default\")")
	}
	for _, k := range secretKeys {
		if _, given := m[k]; given {
			t.get(k)
			d.errorf(t.key(k), "S3 keys do not belong in the config file: put them in credentials_file "+
				"(AWS shared-credentials format) or in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
		}
	}
	t.done()
	s.S3 = c
}

// parseEndpoint takes the scheme as the explicit choice between TLS and
// plain HTTP, so that a clear-text endpoint is always visible in the file.
func parseEndpoint(s string) (host string, secure bool, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", false, fmt.Errorf("must be a URL such as \"https://s3.example.com\" or \"http://127.0.0.1:8333\", not %q", s)
	}
	switch u.Scheme {
	case "https":
		secure = true
	case "http":
	default:
		return "", false, fmt.Errorf("scheme must be https (or http, for a store on a trusted network), not %q", u.Scheme)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return "", false, fmt.Errorf("must be scheme://host[:port] only (the bucket goes in the user's root), not %q", s)
	}
	return u.Host, secure, nil
}

// parseS3Root reads s3://bucket[/prefix] into a root whose prefix, if any,
// ends with "/". The prefix is made of path segments FTP could also name.
func parseS3Root(s string) (*S3Root, error) {
	rest := strings.TrimPrefix(s, "s3://")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if !bucketName.MatchString(bucket) || strings.Contains(bucket, "..") || net.ParseIP(bucket) != nil {
		return nil, fmt.Errorf("bucket %q is not a valid S3 bucket name (3-63 characters: a-z, 0-9, '.', '-'; "+
			"starting and ending with a letter or digit)", bucket)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return &S3Root{Bucket: bucket}, nil
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\") || !printable(seg) {
			return nil, fmt.Errorf("prefix %q must be plain path segments (no empty, \".\" or \"..\" segments, "+
				"backslashes or control characters)", prefix)
		}
	}
	return &S3Root{Bucket: bucket, Prefix: prefix + "/"}, nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Credentials reads the keys: from CredentialsFile if set, else from the
// environment. ftpsd calls it once at start, before dropping privileges,
// so that the file may be readable by root only.
func (c *S3) Credentials() (S3Credentials, error) {
	if c.CredentialsFile == "" {
		cr := S3Credentials{AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
			SessionToken: os.Getenv("AWS_SESSION_TOKEN"), Source: "environment"}
		if cr.AccessKey == "" || cr.SecretKey == "" {
			return S3Credentials{}, errors.New("[storage.s3]: no credentials_file and AWS_ACCESS_KEY_ID or " +
				"AWS_SECRET_ACCESS_KEY is not set in the environment")
		}
		return cr, nil
	}
	data, err := os.ReadFile(c.CredentialsFile)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return S3Credentials{}, fmt.Errorf("[storage.s3] credentials_file %s: cannot read: %w", c.CredentialsFile, err)
	}
	cr, err := parseCredentials(data, c.Profile)
	if err != nil {
		return S3Credentials{}, fmt.Errorf("[storage.s3] credentials_file %s: %w", c.CredentialsFile, err)
	}
	cr.Source = c.CredentialsFile + " [" + c.Profile + "]"
	return cr, nil
}

// parseCredentials reads the AWS shared-credentials format:
//
//	[default]
//	aws_access_key_id = AKIA...
//	aws_secret_access_key = ...
//	aws_session_token = ...   (optional)
//
// Lines starting with # or ; are comments.
func parseCredentials(data []byte, profile string) (S3Credentials, error) {
	var cr S3Credentials
	section, found := "", false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[' && line[len(line)-1] == ']':
			section = strings.TrimSpace(line[1 : len(line)-1])
			found = found || section == profile
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return cr, fmt.Errorf("line %d: expected key = value or [profile]", n)
		}
		if section != profile {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			cr.AccessKey = v
		case "aws_secret_access_key":
			cr.SecretKey = v
		case "aws_session_token":
			cr.SessionToken = v
		}
	}
	if err := sc.Err(); err != nil {
		return cr, err
	}
	switch {
	case !found:
		return cr, fmt.Errorf("no [%s] profile", profile)
	case cr.AccessKey == "" || cr.SecretKey == "":
		return cr, fmt.Errorf("profile [%s] needs aws_access_key_id and aws_secret_access_key", profile)
	}
	return cr, nil
}
