// Verify BlockATM-Signature-V2 webhooks (as sent by blockhook). Java 8+, JDK only.
//
// Copy this file into your project and add your package line. Typical use (Spring shown; any
// framework works as long as you pass the *raw* body bytes, not a re-serialised object):
//
//   @PostMapping("/webhooks/blockatm")
//   public ResponseEntity<String> webhook(@RequestHeader Map<String, String> headers,
//                                         @RequestBody byte[] body) {
//       try {
//           BlockhookWebhook.verify(headers, body, Arrays.asList("sck_..."),
//                                   BlockhookWebhook.Mode.SORTED);
//       } catch (BlockhookWebhook.VerificationException e) {
//           return ResponseEntity.status(401).body(e.getReason().code);
//       }
//       queue.submit(body);                    // do the work asynchronously
//       return ResponseEntity.ok("");          // only a 200 acknowledges the delivery
//   }
//
// Signature (contract section 2):
//   signature = lowercase_hex(HMAC_SHA256(key = UTF-8 bytes of the secret, message))
//   sorted:  message = canonical(body) + "&time=" + t   ("time=" + t when canonical is empty)
//   raw:     message = <exact body bytes> + "&time=" + t

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public final class BlockhookWebhook {
    public static final String TIME_HEADER = "BlockATM-Request-Time";
    public static final String SIGNATURE_HEADER = "BlockATM-Signature-V2";
    public static final long DEFAULT_WINDOW_MS = 5 * 60 * 1000L;

    /** The endpoint's signing mode; EITHER accepts both. */
    public enum Mode { SORTED, RAW, EITHER }

    /** Why a request was rejected. */
    public enum Reason {
        MISSING_HEADER("missing_header"),
        TIME_NOT_INTEGER("time_not_integer"),
        TOO_OLD("too_old"),
        TOO_NEW("too_new"),
        MALFORMED_SIGNATURE("malformed_signature"),
        NOT_JSON_OBJECT("not_json_object"),
        MISMATCH("mismatch");

        public final String code;

        Reason(String code) {
            this.code = code;
        }
    }

    public static final class VerificationException extends Exception {
        private static final long serialVersionUID = 1L;
        private final Reason reason;

        public VerificationException(Reason reason, String detail) {
            super(reason.code + ": " + detail);
            this.reason = reason;
        }

        public Reason getReason() {
            return reason;
        }
    }

    private BlockhookWebhook() {
    }

    // -----------------------------------------------------------------------------------------
    // A small strict JSON parser that keeps number literals as written (2000.00 stays 2000.00).
    // Tree: object -> LinkedHashMap<String, Object>, array -> List<Object>, number -> JsonNumber,
    // string -> String, true/false -> Boolean, null -> null.
    // -----------------------------------------------------------------------------------------

    /** A JSON number, kept as its literal text. */
    public static final class JsonNumber {
        public final String literal;

        JsonNumber(String literal) {
            this.literal = literal;
        }

        @Override
        public String toString() {
            return literal;
        }
    }

    private static final int MAX_DEPTH = 512;

    /** Parses strict JSON (UTF-8, no duplicate keys); throws IllegalArgumentException if invalid. */
    public static Object parseJson(byte[] body) {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(body))
                    .toString();
        } catch (CharacterCodingException e) {
            throw new IllegalArgumentException("invalid JSON: body is not valid UTF-8");
        }
        Parser p = new Parser(text);
        Object value = p.value(0);
        p.skipWhitespace();
        if (p.i != text.length()) {
            throw p.error("trailing data");
        }
        return value;
    }

    private static final class Parser {
        final String s;
        int i;

        Parser(String s) {
            this.s = s;
        }

        IllegalArgumentException error(String what) {
            return new IllegalArgumentException("invalid JSON at offset " + i + ": " + what);
        }

        char peek() {
            return i < s.length() ? s.charAt(i) : '\0';
        }

        void skipWhitespace() {
            while (i < s.length() && " \t\n\r".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
        }

        void expect(char c) {
            if (i >= s.length() || s.charAt(i) != c) {
                throw error("expected '" + c + "'");
            }
            i++;
        }

        Object value(int depth) {
            if (depth > MAX_DEPTH) {
                throw error("nested too deeply");
            }
            skipWhitespace();
            char c = peek();
            if (c == '{') {
                return object(depth);
            } else if (c == '[') {
                return array(depth);
            } else if (c == '"') {
                return string();
            } else if (c == '-' || (c >= '0' && c <= '9')) {
                return number();
            } else if (s.startsWith("true", i)) {
                i += 4;
                return Boolean.TRUE;
            } else if (s.startsWith("false", i)) {
                i += 5;
                return Boolean.FALSE;
            } else if (s.startsWith("null", i)) {
                i += 4;
                return null;
            }
            throw error("unexpected character");
        }

        Map<String, Object> object(int depth) {
            expect('{');
            Map<String, Object> map = new LinkedHashMap<>();
            skipWhitespace();
            if (peek() == '}') {
                i++;
                return map;
            }
            while (true) {
                skipWhitespace();
                String key = string();
                if (map.containsKey(key)) {
                    throw error("duplicate key \"" + key + "\"");
                }
                skipWhitespace();
                expect(':');
                map.put(key, value(depth + 1));
                skipWhitespace();
                if (peek() == ',') {
                    i++;
                    continue;
                }
                expect('}');
                return map;
            }
        }

        List<Object> array(int depth) {
            expect('[');
            List<Object> items = new ArrayList<>();
            skipWhitespace();
            if (peek() == ']') {
                i++;
                return items;
            }
            while (true) {
                items.add(value(depth + 1));
                skipWhitespace();
                if (peek() == ',') {
                    i++;
                    continue;
                }
                expect(']');
                return items;
            }
        }

        int hex4() {
            if (i + 4 > s.length()) {
                throw error("bad \\u escape");
            }
            int value = 0;
            for (int k = 0; k < 4; k++) {
                char h = s.charAt(i + k);
                int digit = h <= 'f' ? Character.digit(h, 16) : -1; // ASCII hex digits only
                if (digit < 0) {
                    throw error("bad \\u escape");
                }
                value = value * 16 + digit;
            }
            i += 4;
            return value;
        }

        String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                if (i >= s.length()) {
                    throw error("unterminated string");
                }
                char c = s.charAt(i++);
                if (c == '"') {
                    return out.toString();
                }
                if (c < 0x20) {
                    throw error("control character in string");
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char e = peek();
                i++;
                switch (e) {
                    case '"': case '\\': case '/': out.append(e); break;
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'n': out.append('\n'); break;
                    case 'r': out.append('\r'); break;
                    case 't': out.append('\t'); break;
                    case 'u': {
                        int cp = hex4();
                        if (cp >= 0xDC00 && cp <= 0xDFFF) {
                            throw error("lone low surrogate");
                        }
                        out.append((char) cp);
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            if (!s.startsWith("\\u", i)) {
                                throw error("lone high surrogate");
                            }
                            i += 2;
                            int lo = hex4();
                            if (lo < 0xDC00 || lo > 0xDFFF) {
                                throw error("bad low surrogate");
                            }
                            out.append((char) lo);
                        }
                        break;
                    }
                    default:
                        throw error("bad escape");
                }
            }
        }

        JsonNumber number() {
            int start = i;
            if (peek() == '-') {
                i++;
            }
            if (peek() == '0') {
                i++;
            } else if (digits() == 0) {
                throw error("bad number");
            }
            if (peek() == '.') {
                i++;
                if (digits() == 0) {
                    throw error("bad fraction");
                }
            }
            if (peek() == 'e' || peek() == 'E') {
                i++;
                if (peek() == '+' || peek() == '-') {
                    i++;
                }
                if (digits() == 0) {
                    throw error("bad exponent");
                }
            }
            return new JsonNumber(s.substring(start, i));
        }

        int digits() {
            int start = i;
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
            }
            return i - start;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Canonical form (mode SORTED)
    // -----------------------------------------------------------------------------------------

    /** Compares the UTF-8 bytes, unsigned. (String.compareTo compares UTF-16 code units, which
     *  puts characters above U+FFFF before U+E000..U+FFFF: wrong here.) */
    private static int compareUtf8(String a, String b) {
        byte[] x = a.getBytes(StandardCharsets.UTF_8);
        byte[] y = b.getBytes(StandardCharsets.UTF_8);
        for (int k = 0; k < Math.min(x.length, y.length); k++) {
            int d = (x[k] & 0xff) - (y[k] & 0xff);
            if (d != 0) {
                return d;
            }
        }
        return x.length - y.length;
    }

    private static String scalarText(Object v) {
        return v.toString(); // String, JsonNumber (its literal) or Boolean ("true"/"false")
    }

    @SuppressWarnings("unchecked")
    private static void objectParts(Map<String, Object> map, List<String> parts) {
        List<String> keys = new ArrayList<>(map.keySet());
        Collections.sort(keys, BlockhookWebhook::compareUtf8);
        for (String key : keys) {
            Object v = map.get(key);
            if (v == null) {
                continue;
            } else if (v instanceof Map) {
                objectParts((Map<String, Object>) v, parts); // nested object: no key prefix
            } else if (v instanceof List) {
                arrayParts((List<Object>) v, parts); // array: its elements, no key
            } else {
                parts.add(key + "=" + scalarText(v));
            }
        }
    }

    @SuppressWarnings("unchecked")
    private static void arrayParts(List<Object> items, List<String> parts) {
        for (Object v : items) {
            if (v == null) {
                continue;
            } else if (v instanceof Map) {
                objectParts((Map<String, Object>) v, parts);
            } else if (v instanceof List) {
                arrayParts((List<Object>) v, parts);
            } else {
                parts.add(scalarText(v)); // scalar elements are bare
            }
        }
    }

    /** Canonical string of a JSON object body; throws IllegalArgumentException if invalid. */
    @SuppressWarnings("unchecked")
    public static String canonical(byte[] body) {
        Object tree = parseJson(body);
        if (!(tree instanceof Map)) {
            throw new IllegalArgumentException("the body is not a JSON object");
        }
        List<String> parts = new ArrayList<>();
        objectParts((Map<String, Object>) tree, parts);
        return String.join("&", parts);
    }

    /** The exact bytes that are HMAC'd; mode is SORTED or RAW. */
    public static byte[] message(Mode mode, byte[] body, String time) {
        if (mode == Mode.RAW) {
            byte[] suffix = ("&time=" + time).getBytes(StandardCharsets.UTF_8);
            byte[] out = new byte[body.length + suffix.length];
            System.arraycopy(body, 0, out, 0, body.length);
            System.arraycopy(suffix, 0, out, body.length, suffix.length);
            return out;
        }
        if (mode == Mode.SORTED) {
            String c = canonical(body);
            return (c.isEmpty() ? "time=" + time : c + "&time=" + time).getBytes(StandardCharsets.UTF_8);
        }
        throw new IllegalArgumentException("mode must be SORTED or RAW");
    }

    /** Lowercase hex HMAC-SHA256 of the message, keyed with the UTF-8 bytes of the secret. */
    public static String sign(String secret, byte[] message) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            StringBuilder hex = new StringBuilder(64);
            for (byte b : mac.doFinal(message)) {
                hex.append(Character.forDigit((b >> 4) & 0xf, 16)).append(Character.forDigit(b & 0xf, 16));
            }
            return hex.toString();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 unavailable", e);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Verification
    // -----------------------------------------------------------------------------------------

    /** Case-insensitive lookup; values may be Strings or lists of Strings (first one used). */
    private static String header(Map<String, ?> headers, String name) {
        for (Map.Entry<String, ?> e : headers.entrySet()) {
            if (e.getKey() != null && e.getKey().equalsIgnoreCase(name)) {
                Object v = e.getValue();
                if (v instanceof Collection) {
                    Collection<?> values = (Collection<?>) v;
                    v = values.isEmpty() ? null : values.iterator().next();
                }
                return v == null ? null : v.toString();
            }
        }
        return null;
    }

    private static boolean isPlainInteger(String s) {
        // ASCII digits only (no sign, spaces or exponent); at most 18 so it fits in a long.
        return s.matches("[0-9]{1,18}");
    }

    /** verify() with a 5-minute window and the system clock. */
    public static Mode verify(Map<String, ?> headers, byte[] rawBody, List<String> secrets, Mode mode)
            throws VerificationException {
        return verify(headers, rawBody, secrets, mode, DEFAULT_WINDOW_MS, System.currentTimeMillis());
    }

    /**
     * Verifies one webhook request and returns the mode that matched (SORTED or RAW).
     *
     * @param headers  request headers; names are compared case-insensitively
     * @param rawBody  the exact request body bytes
     * @param secrets  the endpoint secret(s): old and new during a rotation
     * @param mode     the endpoint's signing mode, or EITHER
     * @param windowMs maximum |now - request time| in ms (default 300000; keep it <= 15 minutes)
     * @param nowMs    the current Unix time in ms
     * @throws VerificationException with the reason the request was rejected
     */
    public static Mode verify(Map<String, ?> headers, byte[] rawBody, List<String> secrets, Mode mode,
                              long windowMs, long nowMs) throws VerificationException {
        if (mode == null) {
            throw new IllegalArgumentException("mode must be SORTED, RAW or EITHER");
        }
        if (secrets.isEmpty()) {
            throw new IllegalArgumentException("give at least one non-empty secret");
        }
        for (String secret : secrets) {
            if (secret == null || secret.isEmpty()) {
                throw new IllegalArgumentException("give at least one non-empty secret");
            }
        }
        String time = header(headers, TIME_HEADER);
        String signature = header(headers, SIGNATURE_HEADER);
        if (time == null) {
            throw new VerificationException(Reason.MISSING_HEADER, "no " + TIME_HEADER + " header");
        }
        if (signature == null) {
            throw new VerificationException(Reason.MISSING_HEADER, "no " + SIGNATURE_HEADER + " header");
        }

        if (!isPlainInteger(time)) {
            throw new VerificationException(Reason.TIME_NOT_INTEGER,
                    TIME_HEADER + " is not a plain integer: \"" + time + "\"");
        }
        long age = nowMs - Long.parseLong(time);
        if (age >= windowMs) {
            throw new VerificationException(Reason.TOO_OLD, "request time is " + age + " ms in the past");
        }
        if (-age >= windowMs) {
            throw new VerificationException(Reason.TOO_NEW, "request time is " + -age + " ms in the future");
        }

        if (!signature.matches("[0-9a-fA-F]{64}")) {
            throw new VerificationException(Reason.MALFORMED_SIGNATURE,
                    SIGNATURE_HEADER + " is not 64 hex characters");
        }
        byte[] given = signature.toLowerCase(Locale.ROOT).getBytes(StandardCharsets.US_ASCII);

        List<Mode> modes = new ArrayList<>();
        List<byte[]> messages = new ArrayList<>();
        String bodyError = null;
        if (mode == Mode.RAW || mode == Mode.EITHER) {
            modes.add(Mode.RAW);
            messages.add(message(Mode.RAW, rawBody, time));
        }
        if (mode == Mode.SORTED || mode == Mode.EITHER) {
            try {
                messages.add(message(Mode.SORTED, rawBody, time));
                modes.add(Mode.SORTED);
            } catch (IllegalArgumentException e) {
                bodyError = e.getMessage();
            }
        }

        Mode matched = null;
        for (int k = 0; k < messages.size(); k++) {
            for (String secret : secrets) {
                byte[] expected = sign(secret, messages.get(k)).getBytes(StandardCharsets.US_ASCII);
                // MessageDigest.isEqual runs in constant time; keep looping so timing reveals nothing.
                if (MessageDigest.isEqual(expected, given) && matched == null) {
                    matched = modes.get(k);
                }
            }
        }
        if (matched != null) {
            return matched;
        }
        if (bodyError != null) {
            throw new VerificationException(Reason.NOT_JSON_OBJECT, bodyError);
        }
        throw new VerificationException(Reason.MISMATCH, "signature does not match");
    }
}
