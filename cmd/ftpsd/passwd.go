package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// cmdPasswd prints a bcrypt hash for password_hash. On a terminal it prompts
// twice without echo; otherwise it reads the first line of standard input.
func cmdPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlagSet("passwd"), "passwd", args); err != nil {
		return err
	}
	var pw string
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		first, err := readNoEcho(f, stderr, "Password: ")
		if err != nil {
			return err
		}
		again, err := readNoEcho(f, stderr, "Again: ")
		if err != nil {
			return err
		}
		if first != again {
			return errors.New("passwd: the two passwords differ")
		}
		pw = first
	} else {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("passwd: read standard input: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return errors.New("passwd: empty password")
	}
	if len(pw) > 72 {
		return errors.New("passwd: bcrypt uses at most 72 bytes of a password")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	fmt.Fprintln(stdout, string(hash))
	return nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func readNoEcho(f *os.File, prompt io.Writer, text string) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("passwd: terminal: %w", err)
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", fmt.Errorf("passwd: terminal: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(prompt, text)
	line, err := bufio.NewReader(f).ReadString('\n')
	fmt.Fprintln(prompt)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("passwd: read: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
