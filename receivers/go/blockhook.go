// Package blockhook verifies BlockATM-Signature-V2 webhooks (as sent by blockhook).
// Go 1.19+, standard library only: copy this file into your project and rename the package.
//
// Typical use (net/http):
//
//	func webhook(w http.ResponseWriter, r *http.Request) {
//		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20)) // the raw bytes, unparsed
//		if err != nil {
//			http.Error(w, "read error", http.StatusBadRequest)
//			return
//		}
//		if _, err := blockhook.Verify(r.Header, body, []string{"sck_..."}, blockhook.Options{}); err != nil {
//			http.Error(w, err.Error(), http.StatusUnauthorized)
//			return
//		}
//		go process(body)            // or enqueue: do the work asynchronously
//		w.WriteHeader(http.StatusOK) // only a 200 acknowledges the delivery
//	}
//
// Signature (contract section 2):
//
//	signature = lowercase_hex(HMAC_SHA256(key = UTF-8 bytes of the secret, message))
//	sorted:  message = canonical(body) + "&time=" + t   ("time=" + t when canonical is empty)
//	raw:     message = <exact body bytes> + "&time=" + t
package blockhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	TimeHeader      = "BlockATM-Request-Time"
	SignatureHeader = "BlockATM-Signature-V2"
	DefaultWindowMs = int64(5 * 60 * 1000)
)

// Reason says why Verify rejected a request.
type Reason string

const (
	MissingHeader      Reason = "missing_header"
	TimeNotInteger     Reason = "time_not_integer"
	TooOld             Reason = "too_old"
	TooNew             Reason = "too_new"
	MalformedSignature Reason = "malformed_signature"
	NotJSONObject      Reason = "not_json_object"
	Mismatch           Reason = "mismatch"
)

// VerifyError is the error returned by Verify.
type VerifyError struct {
	Reason Reason
	Detail string
}

func (e *VerifyError) Error() string { return string(e.Reason) + ": " + e.Detail }

// ---------------------------------------------------------------------------------------------
// A small strict JSON parser that keeps number literals as written (encoding/json would also
// silently accept duplicate keys and replace invalid escapes, which must be rejected here).
// Tree: object -> map[string]any, array -> []any, number -> jsonNumber (literal text),
// string -> string, true/false -> bool, null -> nil.
// ---------------------------------------------------------------------------------------------

type jsonNumber string

const maxDepth = 512

type parser struct {
	s []byte
	i int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *parser) skipWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *parser) expect(c byte) error {
	if p.peek() != c {
		return p.errorf("expected %q", c)
	}
	p.i++
	return nil
}

func (p *parser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested too deeply")
	}
	p.skipWS()
	switch c := p.peek(); {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		return p.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	for _, w := range []struct {
		word string
		val  any
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if bytes.HasPrefix(p.s[p.i:], []byte(w.word)) {
			p.i += len(w.word)
			return w.val, nil
		}
	}
	return nil, p.errorf("unexpected character")
}

func (p *parser) object(depth int) (any, error) {
	p.i++ // {
	obj := map[string]any{}
	p.skipWS()
	if p.peek() == '}' {
		p.i++
		return obj, nil
	}
	for {
		p.skipWS()
		key, err := p.string()
		if err != nil {
			return nil, err
		}
		if _, dup := obj[key]; dup {
			return nil, p.errorf("duplicate key %q", key)
		}
		p.skipWS()
		if err := p.expect(':'); err != nil {
			return nil, err
		}
		if obj[key], err = p.value(depth + 1); err != nil {
			return nil, err
		}
		p.skipWS()
		if p.peek() == ',' {
			p.i++
			continue
		}
		return obj, p.expect('}')
	}
}

func (p *parser) array(depth int) (any, error) {
	p.i++ // [
	items := []any{}
	p.skipWS()
	if p.peek() == ']' {
		p.i++
		return items, nil
	}
	for {
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		items = append(items, v)
		p.skipWS()
		if p.peek() == ',' {
			p.i++
			continue
		}
		return items, p.expect(']')
	}
}

func (p *parser) hex4() (rune, error) {
	if p.i+4 > len(p.s) {
		return 0, p.errorf("bad \\u escape")
	}
	b, err := hex.DecodeString(string(p.s[p.i : p.i+4]))
	if err != nil {
		return 0, p.errorf("bad \\u escape")
	}
	p.i += 4
	return rune(b[0])<<8 | rune(b[1]), nil
}

func (p *parser) string() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	var out []byte
	for {
		if p.i >= len(p.s) {
			return "", p.errorf("unterminated string")
		}
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			return string(out), nil
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c != '\\':
			out = append(out, c) // the body was checked to be valid UTF-8 beforehand
			continue
		}
		e := p.peek()
		p.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, err := p.hex4()
			if err != nil {
				return "", err
			}
			if r >= 0xDC00 && r <= 0xDFFF {
				return "", p.errorf("lone low surrogate")
			}
			if r >= 0xD800 && r <= 0xDBFF {
				if p.i+2 > len(p.s) || p.s[p.i] != '\\' || p.s[p.i+1] != 'u' {
					return "", p.errorf("lone high surrogate")
				}
				p.i += 2
				lo, err := p.hex4()
				if err != nil {
					return "", err
				}
				if lo < 0xDC00 || lo > 0xDFFF {
					return "", p.errorf("bad low surrogate")
				}
				r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", p.errorf("bad escape")
		}
	}
}

func (p *parser) number() (any, error) {
	start := p.i
	digits := func() int {
		n := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		return p.i - n
	}
	if p.peek() == '-' {
		p.i++
	}
	if p.peek() == '0' {
		p.i++
	} else if digits() == 0 {
		return nil, p.errorf("bad number")
	}
	if p.peek() == '.' {
		p.i++
		if digits() == 0 {
			return nil, p.errorf("bad fraction")
		}
	}
	if p.peek() == 'e' || p.peek() == 'E' {
		p.i++
		if p.peek() == '+' || p.peek() == '-' {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errorf("bad exponent")
		}
	}
	return jsonNumber(p.s[start:p.i]), nil
}

// ---------------------------------------------------------------------------------------------
// Canonical form (mode "sorted")
// ---------------------------------------------------------------------------------------------

func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case jsonNumber:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	}
	panic("unreachable")
}

func objectParts(obj map[string]any, parts []string) []string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys) // Go strings compare by bytes: UTF-8 byte order, as required
	for _, k := range keys {
		switch v := obj[k].(type) {
		case nil:
			// null: skipped
		case map[string]any:
			parts = objectParts(v, parts) // nested object: its pairs, no key prefix
		case []any:
			parts = arrayParts(v, parts) // array: its elements, no key
		default:
			parts = append(parts, k+"="+scalarText(v))
		}
	}
	return parts
}

func arrayParts(items []any, parts []string) []string {
	for _, item := range items {
		switch v := item.(type) {
		case nil:
		case map[string]any:
			parts = objectParts(v, parts)
		case []any:
			parts = arrayParts(v, parts)
		default:
			parts = append(parts, scalarText(v)) // scalar elements are bare
		}
	}
	return parts
}

// Canonical returns the canonical string of a JSON object body, or an error if the body is not
// a valid JSON object (invalid UTF-8, duplicate keys and lone surrogate escapes included).
func Canonical(body []byte) (string, error) {
	if !utf8.Valid(body) {
		return "", errors.New("invalid JSON: body is not valid UTF-8")
	}
	p := &parser{s: body}
	tree, err := p.value(0)
	if err != nil {
		return "", err
	}
	p.skipWS()
	if p.i != len(p.s) {
		return "", p.errorf("trailing data")
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return "", errors.New("the body is not a JSON object")
	}
	return strings.Join(objectParts(obj, nil), "&"), nil
}

// Message returns the exact bytes that are HMAC'd. mode is "sorted" or "raw".
func Message(mode string, body []byte, t string) ([]byte, error) {
	switch mode {
	case "raw":
		return append(append([]byte{}, body...), "&time="+t...), nil
	case "sorted":
		c, err := Canonical(body)
		if err != nil {
			return nil, err
		}
		if c == "" {
			return []byte("time=" + t), nil
		}
		return []byte(c + "&time=" + t), nil
	}
	return nil, fmt.Errorf("mode must be \"sorted\" or \"raw\", not %q", mode)
}

// Sign returns the lowercase hex HMAC-SHA256 of message, keyed with the UTF-8 bytes of secret.
func Sign(secret string, message []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(message)
	return hex.EncodeToString(mac.Sum(nil))
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

// Options for Verify; the zero value means mode "sorted", a 5-minute window and the system clock.
type Options struct {
	Mode     string // "sorted" (default), "raw" or "either": must match the endpoint's mode
	WindowMs int64  // maximum |now - request time| in ms; 0 means 300000. Keep it <= 15 minutes
	NowMs    int64  // current Unix time in ms; 0 means time.Now()
}

func headerValue(h http.Header, name string) (string, bool) {
	for k, v := range h { // case-insensitive, even for keys that were not canonicalised
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0], true
		}
	}
	return "", false
}

func isPlainInteger(s string) bool {
	// ASCII digits only (no sign, spaces or exponent); at most 18 so it fits in an int64.
	if len(s) == 0 || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Verify checks one webhook request: headers (names are case-insensitive), the exact body bytes
// and one or more secrets (several during a rotation). It returns the mode that matched
// ("sorted" or "raw"), or a *VerifyError saying why the request was rejected.
func Verify(header http.Header, body []byte, secrets []string, opts Options) (string, error) {
	mode := opts.Mode
	if mode == "" {
		mode = "sorted"
	}
	if mode != "sorted" && mode != "raw" && mode != "either" {
		return "", fmt.Errorf("blockhook: mode must be sorted, raw or either, not %q", mode)
	}
	if len(secrets) == 0 {
		return "", errors.New("blockhook: give at least one non-empty secret")
	}
	for _, s := range secrets {
		if s == "" {
			return "", errors.New("blockhook: give at least one non-empty secret")
		}
	}
	window := opts.WindowMs
	if window == 0 {
		window = DefaultWindowMs
	}
	now := opts.NowMs
	if now == 0 {
		now = time.Now().UnixMilli()
	}

	t, ok := headerValue(header, TimeHeader)
	if !ok {
		return "", &VerifyError{MissingHeader, "no " + TimeHeader + " header"}
	}
	signature, ok := headerValue(header, SignatureHeader)
	if !ok {
		return "", &VerifyError{MissingHeader, "no " + SignatureHeader + " header"}
	}

	if !isPlainInteger(t) {
		return "", &VerifyError{TimeNotInteger, fmt.Sprintf("%s is not a plain integer: %q", TimeHeader, t)}
	}
	sent, _ := strconv.ParseInt(t, 10, 64)
	age := now - sent
	if age >= window {
		return "", &VerifyError{TooOld, fmt.Sprintf("request time is %d ms in the past", age)}
	}
	if -age >= window {
		return "", &VerifyError{TooNew, fmt.Sprintf("request time is %d ms in the future", -age)}
	}

	if !isHex64(signature) {
		return "", &VerifyError{MalformedSignature, SignatureHeader + " is not 64 hex characters"}
	}
	given := []byte(strings.ToLower(signature))

	type candidate struct {
		mode    string
		message []byte
	}
	var candidates []candidate
	var bodyErr error
	if mode == "raw" || mode == "either" {
		m, _ := Message("raw", body, t)
		candidates = append(candidates, candidate{"raw", m})
	}
	if mode == "sorted" || mode == "either" {
		if m, err := Message("sorted", body, t); err != nil {
			bodyErr = err
		} else {
			candidates = append(candidates, candidate{"sorted", m})
		}
	}

	matched := ""
	for _, c := range candidates {
		for _, secret := range secrets {
			// hmac.Equal runs in constant time; keep looping so timing reveals nothing.
			if hmac.Equal([]byte(Sign(secret, c.message)), given) && matched == "" {
				matched = c.mode
			}
		}
	}
	if matched != "" {
		return matched, nil
	}
	if bodyErr != nil {
		return "", &VerifyError{NotJSONObject, bodyErr.Error()}
	}
	return "", &VerifyError{Mismatch, "signature does not match"}
}
