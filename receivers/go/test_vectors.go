//go:build ignore

// Check blockhook.go against conformance vectors.
//
// The build tag keeps this program out of the blockhook package; receivers/run-tests.sh copies
// blockhook.go to <tmp>/blockhook/ and this file to <tmp>/, with a go.mod naming the module
// "blockhooktest", then runs it:
//
//	go run test_vectors.go path/to/vectors.json [more.json ...]
//
// Each vector is one case (message, signature, Verify accepts it in its mode and in "either",
// Verify rejects a tampered body and a stale time); the fixed rejection checks below are one
// case each. Prints "FAIL ..." lines and a final "go: N passed, M failed"; exits 1 on failure.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"blockhooktest/blockhook"
)

const window = blockhook.DefaultWindowMs

type vector struct {
	Name      string `json:"name"`
	Mode      string `json:"mode"`
	Secret    string `json:"secret"`
	Time      string `json:"time"`
	Body      string `json:"body"`
	Message   string `json:"message"`
	Signature string `json:"signature"`
}

// headers builds an http.Header without canonicalising the names, like a hand-made map would.
func headers(pairs ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(pairs); i += 2 {
		h[pairs[i]] = []string{pairs[i+1]}
	}
	return h
}

func std(t, sig string) http.Header {
	return headers("BlockATM-Request-Time", t, "BlockATM-Signature-V2", sig)
}

type opts = blockhook.Options

func expectOK(h http.Header, body []byte, secrets []string, o opts) (string, error) {
	mode, err := blockhook.Verify(h, body, secrets, o)
	if err != nil {
		return "", fmt.Errorf("expected success, got %v", err)
	}
	return mode, nil
}

func expectReason(reason blockhook.Reason, h http.Header, body []byte, secrets []string, o opts) error {
	_, err := blockhook.Verify(h, body, secrets, o)
	var ve *blockhook.VerifyError
	switch {
	case err == nil:
		return fmt.Errorf("expected %s, but Verify accepted", reason)
	case !errors.As(err, &ve):
		return fmt.Errorf("expected %s, got a non-verification error: %v", reason, err)
	case ve.Reason != reason:
		return fmt.Errorf("expected %s, got %v", reason, err)
	}
	return nil
}

func checkVector(v vector) error {
	body := []byte(v.Body)
	msg, err := blockhook.Message(v.Mode, body, v.Time)
	if err != nil {
		return fmt.Errorf("Message: %v", err)
	}
	if string(msg) != v.Message {
		return fmt.Errorf("message %q != expected %q", msg, v.Message)
	}
	if sig := blockhook.Sign(v.Secret, msg); sig != v.Signature {
		return fmt.Errorf("signature %s != expected %s", sig, v.Signature)
	}
	t, _ := strconv.ParseInt(v.Time, 10, 64)
	h := std(v.Time, v.Signature)
	secrets := []string{v.Secret}
	got, err := expectOK(h, body, secrets, opts{Mode: v.Mode, NowMs: t + 1000})
	if err != nil {
		return err
	}
	if got != v.Mode {
		return fmt.Errorf("Verify returned %q", got)
	}
	if _, err := expectOK(h, body, secrets, opts{Mode: "either", NowMs: t - 1000}); err != nil {
		return err
	}
	tampered := append(append([]byte(`{"tampered":true,"original":`), body...), '}')
	if err := expectReason(blockhook.Mismatch, h, tampered, secrets, opts{Mode: v.Mode, NowMs: t}); err != nil {
		return err
	}
	return expectReason(blockhook.TooOld, h, body, secrets, opts{Mode: v.Mode, NowMs: t + window})
}

// Fixed checks of every rejection reason (same list in every language's test).
const (
	secret = "sck_builtin_test"
	T      = "1700000000000"
	now    = int64(1700000000000)
)

var (
	body     = []byte(`{"orderNo":"A1","amount":1.50}`)
	one      = []string{secret}
	badTimes = []string{
		"", "1.7e12", "-1700000000000", "+1700000000000", " 1700000000000",
		"17000000000000000000", "\u0661\u0667\u0660\u0660", "1700000000000\n",
	}
	badBodies = []string{
		"[1]", `"x"`, "", "null", `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"x":{"a":1,"a":2}}`,
		`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":+1}`,
		`{"a":1,}`, `{"a":[1,]}`, `{"a" 1}`, `{"a":1 "b":2}`, `{"a":NaN}`,
		`{"a":Infinity}`, `{"a":tru}`, `{'a':1}`, `{"a":"\ud800"}`,
		`{"a":"\udc00x"}`, `{"\ud800":null}`, `{"a":"\x"}`, "{\"a\":\"x\ty\"}",
		`{"a":1}x`, `{"a":1}{}`, "\xef\xbb\xbf{}", "{\"a\":\"\xff\"}", "{\"a\":\"\xc3\"}",
		`{"a":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`,
	}
	sig        = mustSign("sorted", body)
	rawSig     = mustSign("raw", []byte("not json"))
	wrongModeS = mustSign("raw", body)
)

func mustSign(mode string, b []byte) string {
	m, err := blockhook.Message(mode, b, T)
	if err != nil {
		panic(err)
	}
	return blockhook.Sign(secret, m)
}

func all(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

var fixedChecks = []struct {
	name string
	run  func() error
}{
	{"header names are case-insensitive", func() error {
		_, err := expectOK(headers("blockatm-request-time", T, "BLOCKATM-SIGNATURE-V2", sig), body, one, opts{NowMs: now})
		return err
	}},
	{"uppercase hex signature accepted", func() error {
		_, err := expectOK(std(T, strings.ToUpper(sig)), body, one, opts{NowMs: now})
		return err
	}},
	{"rotation: any listed secret", func() error {
		_, err := expectOK(std(T, sig), body, []string{"sck_old_wrong", secret}, opts{NowMs: now})
		return err
	}},
	{"window edges accepted", func() error {
		_, err1 := expectOK(std(T, sig), body, one, opts{NowMs: now + window - 1})
		_, err2 := expectOK(std(T, sig), body, one, opts{NowMs: now - window + 1})
		return all(err1, err2)
	}},
	{"missing time header", func() error {
		return expectReason(blockhook.MissingHeader, headers("BlockATM-Signature-V2", sig), body, one, opts{NowMs: now})
	}},
	{"missing signature header", func() error {
		return expectReason(blockhook.MissingHeader, headers("BlockATM-Request-Time", T), body, one, opts{NowMs: now})
	}},
	{"time not a plain integer", func() error {
		for _, t := range badTimes {
			if err := expectReason(blockhook.TimeNotInteger, std(t, sig), body, one, opts{NowMs: now}); err != nil {
				return fmt.Errorf("time %q: %v", t, err)
			}
		}
		return nil
	}},
	{"too old", func() error {
		return expectReason(blockhook.TooOld, std(T, sig), body, one, opts{NowMs: now + window})
	}},
	{"too new", func() error {
		return expectReason(blockhook.TooNew, std(T, sig), body, one, opts{NowMs: now - window})
	}},
	{"custom window", func() error {
		return expectReason(blockhook.TooOld, std(T, sig), body, one, opts{NowMs: now + 1000, WindowMs: 1000})
	}},
	{"malformed signature", func() error {
		for _, s := range []string{"", "abc", sig[:63], sig + "0", strings.Repeat("g", 64), " " + sig[1:], sig + "\n"} {
			if err := expectReason(blockhook.MalformedSignature, std(T, s), body, one, opts{NowMs: now}); err != nil {
				return fmt.Errorf("signature %q: %v", s, err)
			}
		}
		return nil
	}},
	{"wrong secret", func() error {
		return expectReason(blockhook.Mismatch, std(T, sig), body, []string{"sck_wrong", "sck_other"}, opts{NowMs: now})
	}},
	{"invalid bodies rejected in sorted and either mode", func() error {
		for _, b := range badBodies {
			for _, mode := range []string{"sorted", "either"} {
				if err := expectReason(blockhook.NotJSONObject, std(T, sig), []byte(b), one, opts{Mode: mode, NowMs: now}); err != nil {
					return fmt.Errorf("body %.40q (%s): %v", b, mode, err)
				}
			}
		}
		return nil
	}},
	{"raw mode does not parse the body", func() error {
		_, err := expectOK(std(T, rawSig), []byte("not json"), one, opts{Mode: "raw", NowMs: now})
		return err
	}},
	{"sorted mode rejects a raw-mode signature", func() error {
		return expectReason(blockhook.Mismatch, std(T, wrongModeS), body, one, opts{NowMs: now})
	}},
	{"moderate nesting accepted", func() error {
		c, err := blockhook.Canonical([]byte(`{"a":` + strings.Repeat("[", 50) + "1" + strings.Repeat("]", 50) + "}"))
		if err != nil || c != "1" {
			return fmt.Errorf("bad canonical %q, %v", c, err)
		}
		return nil
	}},
}

func main() {
	files := os.Args[1:]
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: go run test_vectors.go vectors.json [more.json ...]")
		os.Exit(2)
	}
	passed, failed := 0, 0
	run := func(name string, err error) {
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", name, err)
		} else {
			passed++
		}
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		var doc struct {
			Vectors []vector `json:"vectors"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			os.Exit(2)
		}
		for _, v := range doc.Vectors {
			run(filepath.Base(file)+": "+v.Name, checkVector(v))
		}
	}
	for _, c := range fixedChecks {
		run(c.name, c.run())
	}
	fmt.Printf("go: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
