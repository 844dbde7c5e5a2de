// Check BlockhookWebhook.java against conformance vectors.
//
// Usage (receivers/run-tests.sh compiles into a temporary directory):
//   javac -d /tmp/out BlockhookWebhook.java VectorsTest.java
//   java -cp /tmp/out VectorsTest path/to/vectors.json [more.json ...]
//
// Each vector is one case (message, signature, verify accepts it in its mode and in EITHER,
// verify rejects a tampered body and a stale time); the fixed rejection checks below are one
// case each. Prints "FAIL ..." lines and a final "java: N passed, M failed"; exits 1 on failure.

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

public final class VectorsTest {
    interface Check {
        void run() throws Exception;
    }

    static final long WINDOW = BlockhookWebhook.DEFAULT_WINDOW_MS;

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.write(p, 0, p.length);
        }
        return out.toByteArray();
    }

    static String repeat(String s, int n) {
        return String.join("", Collections.nCopies(n, s));
    }

    static Map<String, String> headers(String... pairs) {
        Map<String, String> h = new LinkedHashMap<>();
        for (int k = 0; k + 1 < pairs.length; k += 2) {
            h.put(pairs[k], pairs[k + 1]);
        }
        return h;
    }

    static Map<String, String> std(String time, String sig) {
        return headers("BlockATM-Request-Time", time, "BlockATM-Signature-V2", sig);
    }

    static void fail(String text) {
        throw new AssertionError(text);
    }

    static BlockhookWebhook.Mode expectOk(Map<String, String> h, byte[] body, List<String> secrets,
                                          BlockhookWebhook.Mode mode, long now, long window) {
        try {
            return BlockhookWebhook.verify(h, body, secrets, mode, window, now);
        } catch (BlockhookWebhook.VerificationException e) {
            throw new AssertionError("expected success, got " + e.getMessage());
        }
    }

    static void expectReason(BlockhookWebhook.Reason reason, Map<String, String> h, byte[] body,
                             List<String> secrets, BlockhookWebhook.Mode mode, long now, long window) {
        try {
            BlockhookWebhook.verify(h, body, secrets, mode, window, now);
        } catch (BlockhookWebhook.VerificationException e) {
            if (e.getReason() != reason) {
                fail("expected " + reason.code + ", got " + e.getMessage());
            }
            return;
        }
        fail("expected " + reason.code + ", but verify accepted");
    }

    static BlockhookWebhook.Mode mode(String name) {
        return BlockhookWebhook.Mode.valueOf(name.toUpperCase(Locale.ROOT));
    }

    static void checkVector(Map<String, Object> v) {
        String vMode = (String) v.get("mode");
        String secret = (String) v.get("secret");
        String time = (String) v.get("time");
        String signature = (String) v.get("signature");
        byte[] body = utf8((String) v.get("body"));
        byte[] msg = BlockhookWebhook.message(mode(vMode), body, time);
        if (!Arrays.equals(msg, utf8((String) v.get("message")))) {
            fail("message \"" + new String(msg, StandardCharsets.UTF_8) + "\" != expected \"" + v.get("message") + "\"");
        }
        String sig = BlockhookWebhook.sign(secret, msg);
        if (!sig.equals(signature)) {
            fail("signature " + sig + " != expected " + signature);
        }
        long t = Long.parseLong(time);
        Map<String, String> h = std(time, signature);
        List<String> secrets = Collections.singletonList(secret);
        BlockhookWebhook.Mode got = expectOk(h, body, secrets, mode(vMode), t + 1000, WINDOW);
        if (got != mode(vMode)) {
            fail("verify returned " + got);
        }
        expectOk(h, body, secrets, BlockhookWebhook.Mode.EITHER, t - 1000, WINDOW);
        byte[] tampered = concat(utf8("{\"tampered\":true,\"original\":"), body, utf8("}"));
        expectReason(BlockhookWebhook.Reason.MISMATCH, h, tampered, secrets, mode(vMode), t, WINDOW);
        expectReason(BlockhookWebhook.Reason.TOO_OLD, h, body, secrets, mode(vMode), t + WINDOW, WINDOW);
    }

    // Fixed checks of every rejection reason (same list in every language's test).
    static final String SECRET = "sck_builtin_test";
    static final List<String> ONE = Collections.singletonList(SECRET);
    static final byte[] BODY = utf8("{\"orderNo\":\"A1\",\"amount\":1.50}");
    static final String T = "1700000000000";
    static final long NOW = 1700000000000L;
    static final BlockhookWebhook.Mode SORTED = BlockhookWebhook.Mode.SORTED;
    static final String SIG = BlockhookWebhook.sign(SECRET, BlockhookWebhook.message(SORTED, BODY, T));
    static final String[] BAD_TIMES = {"", "1.7e12", "-1700000000000", "+1700000000000", " 1700000000000",
        "17000000000000000000", "\u0661\u0667\u0660\u0660", "1700000000000\n"};
    static final String[] BAD_SIGNATURES = {"", "abc", SIG.substring(0, 63), SIG + "0", repeat("g", 64),
        " " + SIG.substring(1), SIG + "\n"};
    static final List<byte[]> BAD_BODIES = new ArrayList<>();

    static {
        String[] texts = {"[1]", "\"x\"", "", "null", "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":2}",
            "{\"x\":{\"a\":1,\"a\":2}}",
            "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":+1}",
            "{\"a\":1,}", "{\"a\":[1,]}", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "{\"a\":NaN}",
            "{\"a\":Infinity}", "{\"a\":tru}", "{'a':1}", "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00x\"}", "{\"\\ud800\":null}", "{\"a\":\"\\x\"}", "{\"a\":\"x\ty\"}",
            "{\"a\":1}x", "{\"a\":1}{}", "{\"a\":" + repeat("[", 100000) + repeat("]", 100000) + "}"};
        for (String t : texts) {
            BAD_BODIES.add(utf8(t));
        }
        BAD_BODIES.add(new byte[] {(byte) 0xef, (byte) 0xbb, (byte) 0xbf, '{', '}'});
        BAD_BODIES.add(new byte[] {'{', '"', 'a', '"', ':', '"', (byte) 0xff, '"', '}'});
        BAD_BODIES.add(new byte[] {'{', '"', 'a', '"', ':', '"', (byte) 0xc3, '"', '}'});
    }

    static final Map<String, Check> FIXED_CHECKS = new LinkedHashMap<>();

    static {
        FIXED_CHECKS.put("header names are case-insensitive", () -> expectOk(
            headers("blockatm-request-time", T, "BLOCKATM-SIGNATURE-V2", SIG), BODY, ONE, SORTED, NOW, WINDOW));
        FIXED_CHECKS.put("uppercase hex signature accepted", () -> expectOk(
            std(T, SIG.toUpperCase(Locale.ROOT)), BODY, ONE, SORTED, NOW, WINDOW));
        FIXED_CHECKS.put("rotation: any listed secret", () -> expectOk(
            std(T, SIG), BODY, Arrays.asList("sck_old_wrong", SECRET), SORTED, NOW, WINDOW));
        FIXED_CHECKS.put("window edges accepted", () -> {
            expectOk(std(T, SIG), BODY, ONE, SORTED, NOW + WINDOW - 1, WINDOW);
            expectOk(std(T, SIG), BODY, ONE, SORTED, NOW - WINDOW + 1, WINDOW);
        });
        FIXED_CHECKS.put("missing time header", () -> expectReason(BlockhookWebhook.Reason.MISSING_HEADER,
            headers("BlockATM-Signature-V2", SIG), BODY, ONE, SORTED, NOW, WINDOW));
        FIXED_CHECKS.put("missing signature header", () -> expectReason(BlockhookWebhook.Reason.MISSING_HEADER,
            headers("BlockATM-Request-Time", T), BODY, ONE, SORTED, NOW, WINDOW));
        FIXED_CHECKS.put("time not a plain integer", () -> {
            for (String t : BAD_TIMES) {
                expectReason(BlockhookWebhook.Reason.TIME_NOT_INTEGER, std(t, SIG), BODY, ONE, SORTED, NOW, WINDOW);
            }
        });
        FIXED_CHECKS.put("too old", () -> expectReason(BlockhookWebhook.Reason.TOO_OLD,
            std(T, SIG), BODY, ONE, SORTED, NOW + WINDOW, WINDOW));
        FIXED_CHECKS.put("too new", () -> expectReason(BlockhookWebhook.Reason.TOO_NEW,
            std(T, SIG), BODY, ONE, SORTED, NOW - WINDOW, WINDOW));
        FIXED_CHECKS.put("custom window", () -> expectReason(BlockhookWebhook.Reason.TOO_OLD,
            std(T, SIG), BODY, ONE, SORTED, NOW + 1000, 1000));
        FIXED_CHECKS.put("malformed signature", () -> {
            for (String s : BAD_SIGNATURES) {
                expectReason(BlockhookWebhook.Reason.MALFORMED_SIGNATURE, std(T, s), BODY, ONE, SORTED, NOW, WINDOW);
            }
        });
        FIXED_CHECKS.put("wrong secret", () -> expectReason(BlockhookWebhook.Reason.MISMATCH,
            std(T, SIG), BODY, Arrays.asList("sck_wrong", "sck_other"), SORTED, NOW, WINDOW));
        FIXED_CHECKS.put("invalid bodies rejected in sorted and either mode", () -> {
            for (byte[] b : BAD_BODIES) {
                expectReason(BlockhookWebhook.Reason.NOT_JSON_OBJECT, std(T, SIG), b, ONE, SORTED, NOW, WINDOW);
                expectReason(BlockhookWebhook.Reason.NOT_JSON_OBJECT, std(T, SIG), b, ONE,
                    BlockhookWebhook.Mode.EITHER, NOW, WINDOW);
            }
        });
        FIXED_CHECKS.put("raw mode does not parse the body", () -> {
            byte[] notJson = utf8("not json");
            String rawSig = BlockhookWebhook.sign(SECRET, BlockhookWebhook.message(BlockhookWebhook.Mode.RAW, notJson, T));
            expectOk(std(T, rawSig), notJson, ONE, BlockhookWebhook.Mode.RAW, NOW, WINDOW);
        });
        FIXED_CHECKS.put("sorted mode rejects a raw-mode signature", () -> {
            String rawSig = BlockhookWebhook.sign(SECRET, BlockhookWebhook.message(BlockhookWebhook.Mode.RAW, BODY, T));
            expectReason(BlockhookWebhook.Reason.MISMATCH, std(T, rawSig), BODY, ONE, SORTED, NOW, WINDOW);
        });
        FIXED_CHECKS.put("moderate nesting accepted", () -> {
            String c = BlockhookWebhook.canonical(utf8("{\"a\":" + repeat("[", 50) + "1" + repeat("]", 50) + "}"));
            if (!c.equals("1")) {
                fail("bad canonical " + c);
            }
        });
    }

    private static int passed;
    private static int failed;

    static void run(String name, Check check) {
        try {
            check.run();
            passed++;
        } catch (Throwable e) {
            failed++;
            System.out.println("FAIL " + name + ": " + e.getMessage());
        }
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            System.err.println("usage: java VectorsTest vectors.json [more.json ...]");
            System.exit(2);
        }
        for (String file : args) {
            Path path = Paths.get(file);
            // The snippet's own literal-preserving parser reads the vectors file too.
            Map<String, Object> doc = (Map<String, Object>) BlockhookWebhook.parseJson(Files.readAllBytes(path));
            for (Object o : (List<Object>) doc.get("vectors")) {
                Map<String, Object> v = (Map<String, Object>) o;
                run(path.getFileName() + ": " + v.get("name"), () -> checkVector(v));
            }
        }
        for (Map.Entry<String, Check> c : FIXED_CHECKS.entrySet()) {
            run(c.getKey(), c.getValue());
        }
        System.out.println("java: " + passed + " passed, " + failed + " failed");
        System.exit(failed > 0 ? 1 : 0);
    }
}
