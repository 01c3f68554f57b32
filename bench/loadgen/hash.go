package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// perlCrypt makes a sha512crypt hash with crypt(3) (libcrypt, which
// pam_unix uses to check vsftpd's logins) and times verifications of it:
// one line with the hash, then one line per batch with ms per verification.
const perlCrypt = `
use strict; use Time::HiRes qw(time);
my ($pw, $rounds, $salt, $batches, $n) = @ARGV;
my $h = crypt($pw, "\$6\$rounds=$rounds\$$salt\$");
die "crypt(3) has no sha512crypt\n" unless defined $h && $h =~ /^\$6\$/;
print "$h\n";
crypt($pw, $h) for 1..3;
for my $b (1..$batches) {
  my $t = time;
  for (1..$n) { crypt($pw, $h) eq $h or die "verification failed\n" }
  printf "%.6f\n", (time - $t) / $n * 1000;
}
`

// cmdHash picks hashes of equal cost: sha512crypt for vsftpd's system user
// and bcrypt for ftpsd. With -rounds 0 it starts from crypt(3)'s default of
// 5000 rounds, picks the bcrypt cost closest to it, then sets the rounds so
// that sha512crypt costs what that bcrypt cost does.
func cmdHash(args []string) error {
	fs := flag.NewFlagSet("hash", flag.ContinueOnError)
	pw := fs.String("password", "", "the test user's password")
	rounds := fs.Int("rounds", 0, "sha512crypt rounds; 0 = match the nearest bcrypt cost")
	shaOut := fs.String("sha-out", "", "write the sha512crypt hash here")
	bcOut := fs.String("bcrypt-out", "", "write the bcrypt hash here")
	out := fs.String("out", "", "append JSON results to this file")
	turns := fs.Int("turns", 3, "times each hash is timed, in turn with the other")
	tries := fs.Int("tries", 3, "with -rounds 0: rounds adjustments at most")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pw == "" || *shaOut == "" || *bcOut == "" {
		return fmt.Errorf("-password, -sha-out and -bcrypt-out are required")
	}
	auto := *rounds == 0
	if auto {
		*rounds = 5000
	}
	shaHash, shaMS, err := shaCrypt(*pw, *rounds)
	if err != nil {
		return err
	}
	// bcrypt costs up to a few times the sha512crypt time.
	bestCost, bestMS, bestHash := 0, 0.0, []byte(nil)
	for cost := bcrypt.MinCost; cost <= 16; cost++ {
		h, err := bcrypt.GenerateFromPassword([]byte(*pw), cost)
		if err != nil {
			return err
		}
		ms := bcryptMS(h, *pw)
		fmt.Printf("bcrypt cost %2d: %.3f ms per verification\n", cost, ms)
		if bestHash == nil || math.Abs(math.Log(ms/shaMS)) < math.Abs(math.Log(bestMS/shaMS)) {
			bestCost, bestMS, bestHash = cost, ms, h
		}
		if ms > 3*shaMS {
			break
		}
	}
	fmt.Printf("sha512crypt rounds=%d: %.3f ms per verification\n", *rounds, shaMS)
	// Time both hashes in turn, three times, so that a passing disturbance
	// does not land on one of them only; in auto mode, scale the rounds
	// until the two agree within 10% (three tries at most).
	for try := 1; ; try++ {
		if auto {
			*rounds = max(1000, int(math.Round(float64(*rounds)*bestMS/shaMS/100))*100)
		}
		var shaRuns, bcRuns []float64
		for range max(1, *turns) {
			h, ms, err := shaCrypt(*pw, *rounds)
			if err != nil {
				return err
			}
			shaHash = h
			shaRuns = append(shaRuns, ms)
			bcRuns = append(bcRuns, bcryptMS(bestHash, *pw))
		}
		shaMS, bestMS = median(shaRuns), median(bcRuns)
		fmt.Printf("sha512crypt rounds=%d: %.3f ms, bcrypt cost %d: %.3f ms per verification\n", *rounds, shaMS, bestCost, bestMS)
		if !auto || try >= *tries || math.Abs(shaMS/bestMS-1) < 0.1 {
			break
		}
	}
	if err := os.WriteFile(*shaOut, []byte(shaHash+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(*bcOut, append(bestHash, '\n'), 0o600); err != nil {
		return err
	}
	return emit(*out, Result{Test: "hash", Server: "both", Run: 1, Values: map[string]float64{
		"sha512crypt_rounds": float64(*rounds),
		"sha512crypt_ms":     shaMS,
		"bcrypt_cost":        float64(bestCost),
		"bcrypt_ms":          bestMS,
	}})
}

func shaCrypt(pw string, rounds int) (string, float64, error) {
	const alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var salt [16]byte
	rand.Read(salt[:])
	for i := range salt {
		salt[i] = alphabet[int(salt[i])%len(alphabet)]
	}
	// About 0.2 s per batch.
	n := max(5, 100*5000/rounds)
	out, err := exec.Command("perl", "-e", perlCrypt, pw, strconv.Itoa(rounds), string(salt[:]), "5", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		return "", 0, fmt.Errorf("perl crypt: %v: %s", err, out)
	}
	lines := strings.Fields(string(out))
	if len(lines) < 2 {
		return "", 0, fmt.Errorf("perl crypt: unexpected output %q", out)
	}
	var ms []float64
	for _, l := range lines[1:] {
		v, err := strconv.ParseFloat(l, 64)
		if err != nil {
			return "", 0, fmt.Errorf("perl crypt: %q", l)
		}
		ms = append(ms, v)
	}
	return lines[0], median(ms), nil
}

// bcryptMS is the median time of one CompareHashAndPassword over 5 batches.
func bcryptMS(h []byte, pw string) float64 {
	var ms []float64
	n := 1
	// Size the batches to about 50 ms.
	t := time.Now()
	bcrypt.CompareHashAndPassword(h, []byte(pw))
	if one := time.Since(t); one < 50*time.Millisecond {
		n = int(50*time.Millisecond/one) + 1
	}
	for range 5 {
		t := time.Now()
		for range n {
			if err := bcrypt.CompareHashAndPassword(h, []byte(pw)); err != nil {
				panic(err)
			}
		}
		ms = append(ms, float64(time.Since(t))/float64(n)/1e6)
	}
	return median(ms)
}
