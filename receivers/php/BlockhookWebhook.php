<?php
/**
 * Verify BlockATM-Signature-V2 webhooks (as sent by blockhook). PHP 7.4+, no extensions beyond
 * the always-present hash and pcre.
 *
 * Copy this file into your project. Typical use (plain PHP; in a framework pass the raw body,
 * e.g. $request->getContent() in Laravel/Symfony, not the decoded JSON):
 *
 *   require __DIR__ . '/BlockhookWebhook.php';
 *
 *   $body = file_get_contents('php://input');
 *   try {
 *       BlockhookWebhook::verify(getallheaders(), $body, ['sck_...'], 'sorted');
 *   } catch (BlockhookVerificationException $e) {
 *       http_response_code(401);
 *       exit($e->reason);
 *   }
 *   enqueue($body);              // do the work asynchronously
 *   http_response_code(200);     // only a 200 acknowledges the delivery
 *
 * Signature (contract section 2):
 *   signature = lowercase_hex(HMAC_SHA256(key = UTF-8 bytes of the secret, message))
 *   sorted:  message = canonical(body) . "&time=" . t   ("time=" . t when canonical is empty)
 *   raw:     message = <exact body bytes> . "&time=" . t
 */

final class BlockhookVerificationException extends Exception
{
    /** @var string one of the BlockhookWebhook::* reason constants */
    public $reason;
    /** @var string */
    public $detail;

    public function __construct(string $reason, string $detail)
    {
        parent::__construct($reason . ': ' . $detail);
        $this->reason = $reason;
        $this->detail = $detail;
    }
}

final class BlockhookWebhook
{
    const TIME_HEADER = 'BlockATM-Request-Time';
    const SIGNATURE_HEADER = 'BlockATM-Signature-V2';
    const DEFAULT_WINDOW_MS = 300000;

    // Values of BlockhookVerificationException::$reason
    const MISSING_HEADER = 'missing_header';
    const TIME_NOT_INTEGER = 'time_not_integer';
    const TOO_OLD = 'too_old';
    const TOO_NEW = 'too_new';
    const MALFORMED_SIGNATURE = 'malformed_signature';
    const NOT_JSON_OBJECT = 'not_json_object';
    const MISMATCH = 'mismatch';

    const MAX_DEPTH = 512;
    const ESCAPES = ['"' => '"', '\\' => '\\', '/' => '/', 'b' => "\x08", 'f' => "\f", 'n' => "\n",
        'r' => "\r", 't' => "\t"];

    // -----------------------------------------------------------------------------------------
    // Canonical form (mode "sorted")
    //
    // json_decode() turns 2000.00 into a float (2000) and cannot be used. This small strict
    // parser produces the canonical parts directly: a scalar comes back as its text (string
    // value, number literal as written, "true"/"false"), JSON null as PHP null, and an object
    // or array as the list of canonical parts it contributes.
    // -----------------------------------------------------------------------------------------

    /** Canonical string of a JSON object body; throws InvalidArgumentException if invalid. */
    public static function canonical(string $body): string
    {
        if (preg_match('//u', $body) !== 1) {
            throw new InvalidArgumentException('invalid JSON: body is not valid UTF-8');
        }
        $i = strspn($body, " \t\n\r");
        if (($body[$i] ?? '') !== '{') {
            throw new InvalidArgumentException('the body is not a JSON object');
        }
        $parts = self::value($body, $i, 0);
        $i += strspn($body, " \t\n\r", $i);
        if ($i !== strlen($body)) {
            self::fail('trailing data', $i);
        }
        return implode('&', $parts);
    }

    private static function fail(string $what, int $i): void
    {
        throw new InvalidArgumentException("invalid JSON at offset $i: $what");
    }

    private static function expect(string $s, int &$i, string $c): void
    {
        if (($s[$i] ?? '') !== $c) {
            self::fail("expected '$c'", $i);
        }
        $i++;
    }

    /** @return string|array|null */
    private static function value(string $s, int &$i, int $depth)
    {
        if ($depth > self::MAX_DEPTH) {
            self::fail('nested too deeply', $i);
        }
        $i += strspn($s, " \t\n\r", $i);
        $c = $s[$i] ?? '';
        if ($c === '{') {
            return self::objectParts($s, $i, $depth);
        }
        if ($c === '[') {
            return self::arrayParts($s, $i, $depth);
        }
        if ($c === '"') {
            return self::string($s, $i);
        }
        foreach (['true' => 'true', 'false' => 'false', 'null' => null] as $word => $text) {
            if (substr($s, $i, strlen($word)) === $word) {
                $i += strlen($word);
                return $text;
            }
        }
        if (preg_match('/-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/A', $s, $m, 0, $i)) {
            $i += strlen($m[0]);
            return $m[0]; // the number's literal text, exactly as written
        }
        self::fail('unexpected character', $i);
    }

    private static function objectParts(string $s, int &$i, int $depth): array
    {
        $i++; // {
        $members = []; // [key, value]
        $seen = [];
        $i += strspn($s, " \t\n\r", $i);
        if (($s[$i] ?? '') === '}') {
            $i++;
        } else {
            while (true) {
                $i += strspn($s, " \t\n\r", $i);
                $key = self::string($s, $i);
                if (isset($seen[$key])) {
                    self::fail("duplicate key \"$key\"", $i);
                }
                $seen[$key] = true;
                $i += strspn($s, " \t\n\r", $i);
                self::expect($s, $i, ':');
                $members[] = [$key, self::value($s, $i, $depth + 1)];
                $i += strspn($s, " \t\n\r", $i);
                if (($s[$i] ?? '') === ',') {
                    $i++;
                    continue;
                }
                self::expect($s, $i, '}');
                break;
            }
        }
        // PHP strings are bytes, so strcmp() is exactly the required UTF-8 byte order.
        usort($members, function ($a, $b) {
            return strcmp($a[0], $b[0]);
        });
        $parts = [];
        foreach ($members as [$key, $value]) {
            if ($value === null) {
                continue;                           // null: skipped
            } elseif (is_array($value)) {
                array_push($parts, ...$value);      // nested object or array: no key prefix
            } else {
                $parts[] = $key . '=' . $value;
            }
        }
        return $parts;
    }

    private static function arrayParts(string $s, int &$i, int $depth): array
    {
        $i++; // [
        $parts = [];
        $i += strspn($s, " \t\n\r", $i);
        if (($s[$i] ?? '') === ']') {
            $i++;
            return $parts;
        }
        while (true) {
            $value = self::value($s, $i, $depth + 1);
            if (is_array($value)) {
                array_push($parts, ...$value);      // nested object or array: flattened
            } elseif ($value !== null) {
                $parts[] = $value;                  // scalar elements are bare; nulls skipped
            }
            $i += strspn($s, " \t\n\r", $i);
            if (($s[$i] ?? '') === ',') {
                $i++;
                continue;
            }
            self::expect($s, $i, ']');
            return $parts;
        }
    }

    private static function string(string $s, int &$i): string
    {
        self::expect($s, $i, '"');
        $out = '';
        while (true) {
            $run = strcspn($s, "\"\\", $i);         // plain bytes up to a quote or backslash
            $chunk = substr($s, $i, $run);
            if (preg_match('/[\x00-\x1f]/', $chunk)) {
                self::fail('control character in string', $i);
            }
            $out .= $chunk;
            $i += $run;
            $c = $s[$i] ?? '';
            if ($c === '') {
                self::fail('unterminated string', $i);
            }
            $i++;
            if ($c === '"') {
                return $out;
            }
            $e = $s[$i] ?? '';
            $i++;
            if (isset(self::ESCAPES[$e])) {
                $out .= self::ESCAPES[$e];
            } elseif ($e === 'u') {
                $cp = self::hex4($s, $i);
                if ($cp >= 0xDC00 && $cp <= 0xDFFF) {
                    self::fail('lone low surrogate', $i);
                }
                if ($cp >= 0xD800 && $cp <= 0xDBFF) {
                    if (substr($s, $i, 2) !== '\\u') {
                        self::fail('lone high surrogate', $i);
                    }
                    $i += 2;
                    $lo = self::hex4($s, $i);
                    if ($lo < 0xDC00 || $lo > 0xDFFF) {
                        self::fail('bad low surrogate', $i);
                    }
                    $cp = 0x10000 + (($cp - 0xD800) << 10) + ($lo - 0xDC00);
                }
                $out .= self::utf8($cp);
            } else {
                self::fail('bad escape', $i);
            }
        }
    }

    private static function hex4(string $s, int &$i): int
    {
        if (strspn($s, '0123456789abcdefABCDEF', $i, 4) !== 4) {
            self::fail('bad \\u escape', $i);
        }
        $cp = hexdec(substr($s, $i, 4));
        $i += 4;
        return $cp;
    }

    private static function utf8(int $cp): string
    {
        if ($cp < 0x80) {
            return chr($cp);
        }
        if ($cp < 0x800) {
            return chr(0xC0 | ($cp >> 6)) . chr(0x80 | ($cp & 0x3F));
        }
        if ($cp < 0x10000) {
            return chr(0xE0 | ($cp >> 12)) . chr(0x80 | (($cp >> 6) & 0x3F)) . chr(0x80 | ($cp & 0x3F));
        }
        return chr(0xF0 | ($cp >> 18)) . chr(0x80 | (($cp >> 12) & 0x3F))
            . chr(0x80 | (($cp >> 6) & 0x3F)) . chr(0x80 | ($cp & 0x3F));
    }

    /** The exact bytes that are HMAC'd. $mode is 'sorted' or 'raw'. */
    public static function message(string $mode, string $body, string $time): string
    {
        if ($mode === 'raw') {
            return $body . '&time=' . $time;
        }
        if ($mode === 'sorted') {
            $c = self::canonical($body);
            return $c === '' ? 'time=' . $time : $c . '&time=' . $time;
        }
        throw new InvalidArgumentException("mode must be 'sorted' or 'raw'");
    }

    /** Lowercase hex HMAC-SHA256 of the message, keyed with the (UTF-8) bytes of the secret. */
    public static function sign(string $secret, string $message): string
    {
        return hash_hmac('sha256', $message, $secret);
    }

    // -----------------------------------------------------------------------------------------
    // Verification
    // -----------------------------------------------------------------------------------------

    /**
     * Case-insensitive lookup. Accepts getallheaders(), PSR-7 getHeaders() (arrays of values)
     * and $_SERVER (HTTP_BLOCKATM_REQUEST_TIME style keys).
     */
    private static function header(array $headers, string $name): ?string
    {
        $wanted = strtolower($name);
        foreach ($headers as $key => $value) {
            $key = strtolower(str_replace('_', '-', (string) $key));
            if (strncmp($key, 'http-', 5) === 0) {
                $key = substr($key, 5);
            }
            if ($key === $wanted) {
                if (is_array($value)) {
                    $value = $value[0] ?? null;
                }
                return $value === null ? null : (string) $value;
            }
        }
        return null;
    }

    /**
     * Verifies one webhook request and returns the mode that matched ('sorted' or 'raw').
     *
     * @param array           $headers  request headers; names are compared case-insensitively
     * @param string          $rawBody  the exact request body bytes
     * @param string|string[] $secrets  the endpoint secret, or several during a rotation
     * @param string          $mode     'sorted' (default), 'raw' or 'either'
     * @param int             $windowMs maximum |now - request time| (default 5 min; keep <= 15 min)
     * @param int|null        $nowMs    current Unix time in ms (default: the system clock)
     * @throws BlockhookVerificationException with the reason the request was rejected
     */
    public static function verify(array $headers, string $rawBody, $secrets, string $mode = 'sorted',
                                  int $windowMs = self::DEFAULT_WINDOW_MS, ?int $nowMs = null): string
    {
        if (!in_array($mode, ['sorted', 'raw', 'either'], true)) {
            throw new InvalidArgumentException("mode must be 'sorted', 'raw' or 'either'");
        }
        $secrets = is_array($secrets) ? array_values($secrets) : [$secrets];
        if ($secrets === [] || in_array('', $secrets, true) || in_array(null, $secrets, true)) {
            throw new InvalidArgumentException('give at least one non-empty secret');
        }
        $now = $nowMs ?? (int) floor(microtime(true) * 1000);

        $time = self::header($headers, self::TIME_HEADER);
        $signature = self::header($headers, self::SIGNATURE_HEADER);
        if ($time === null) {
            throw new BlockhookVerificationException(self::MISSING_HEADER, 'no ' . self::TIME_HEADER . ' header');
        }
        if ($signature === null) {
            throw new BlockhookVerificationException(self::MISSING_HEADER, 'no ' . self::SIGNATURE_HEADER . ' header');
        }

        // ASCII digits only (no sign, spaces or exponent), at most 18 of them. (\z, not $: in
        // PCRE $ also matches before a final newline.)
        if (preg_match('/^[0-9]{1,18}\z/', $time) !== 1) {
            throw new BlockhookVerificationException(self::TIME_NOT_INTEGER,
                self::TIME_HEADER . ' is not a plain integer: "' . $time . '"');
        }
        $age = $now - (int) $time;
        if ($age >= $windowMs) {
            throw new BlockhookVerificationException(self::TOO_OLD, "request time is $age ms in the past");
        }
        if (-$age >= $windowMs) {
            throw new BlockhookVerificationException(self::TOO_NEW, 'request time is ' . -$age . ' ms in the future');
        }

        if (preg_match('/^[0-9a-fA-F]{64}\z/', $signature) !== 1) {
            throw new BlockhookVerificationException(self::MALFORMED_SIGNATURE,
                self::SIGNATURE_HEADER . ' is not 64 hex characters');
        }
        $given = strtolower($signature);

        $candidates = []; // mode => message
        $bodyError = null;
        if ($mode === 'raw' || $mode === 'either') {
            $candidates['raw'] = self::message('raw', $rawBody, $time);
        }
        if ($mode === 'sorted' || $mode === 'either') {
            try {
                $candidates['sorted'] = self::message('sorted', $rawBody, $time);
            } catch (InvalidArgumentException $e) {
                $bodyError = $e->getMessage();
            }
        }

        $matched = null;
        foreach ($candidates as $candidateMode => $message) {
            foreach ($secrets as $secret) {
                // hash_equals runs in constant time; keep looping so timing reveals nothing.
                if (hash_equals(self::sign((string) $secret, $message), $given) && $matched === null) {
                    $matched = $candidateMode;
                }
            }
        }
        if ($matched !== null) {
            return $matched;
        }
        if ($bodyError !== null) {
            throw new BlockhookVerificationException(self::NOT_JSON_OBJECT, $bodyError);
        }
        throw new BlockhookVerificationException(self::MISMATCH, 'signature does not match');
    }
}
