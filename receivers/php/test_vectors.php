<?php
// Check BlockhookWebhook.php against conformance vectors.
//
// Usage: php test_vectors.php path/to/vectors.json [more.json ...]
//
// Each vector is one case (message, signature, verify accepts it in its mode and in 'either',
// verify rejects a tampered body and a stale time); the fixed rejection checks below are one case
// each. Prints "FAIL ..." lines and a final "php: N passed, M failed"; exits 1 on any failure.

require __DIR__ . '/BlockhookWebhook.php';

const WINDOW = BlockhookWebhook::DEFAULT_WINDOW_MS;

function headers(string $time, string $signature): array
{
    return ['BlockATM-Request-Time' => $time, 'BlockATM-Signature-V2' => $signature];
}

function fail(string $text): void
{
    throw new RuntimeException($text);
}

function expectOk(array $h, string $body, $secrets, string $mode, int $now, int $window = WINDOW): string
{
    try {
        return BlockhookWebhook::verify($h, $body, $secrets, $mode, $window, $now);
    } catch (BlockhookVerificationException $e) {
        throw new RuntimeException('expected success, got ' . $e->getMessage());
    }
}

function expectReason(string $reason, array $h, string $body, $secrets, string $mode, int $now,
                      int $window = WINDOW): void
{
    try {
        BlockhookWebhook::verify($h, $body, $secrets, $mode, $window, $now);
    } catch (BlockhookVerificationException $e) {
        if ($e->reason !== $reason) {
            fail("expected $reason, got " . $e->getMessage());
        }
        return;
    }
    fail("expected $reason, but verify accepted");
}

function checkVector(array $v): void
{
    $body = $v['body'];
    $msg = BlockhookWebhook::message($v['mode'], $body, $v['time']);
    if ($msg !== $v['message']) {
        fail('message ' . json_encode($msg, JSON_UNESCAPED_UNICODE) . ' != expected '
            . json_encode($v['message'], JSON_UNESCAPED_UNICODE));
    }
    $sig = BlockhookWebhook::sign($v['secret'], $msg);
    if ($sig !== $v['signature']) {
        fail("signature $sig != expected {$v['signature']}");
    }
    $t = (int) $v['time'];
    $h = headers($v['time'], $v['signature']);
    $got = expectOk($h, $body, $v['secret'], $v['mode'], $t + 1000);
    if ($got !== $v['mode']) {
        fail("verify returned $got");
    }
    expectOk($h, $body, [$v['secret']], 'either', $t - 1000);
    $tampered = '{"tampered":true,"original":' . $body . '}';
    expectReason(BlockhookWebhook::MISMATCH, $h, $tampered, $v['secret'], $v['mode'], $t);
    expectReason(BlockhookWebhook::TOO_OLD, $h, $body, $v['secret'], $v['mode'], $t + WINDOW);
}

// Fixed checks of every rejection reason (same list in every language's test).
const SECRET = 'sck_builtin_test';
const BODY = '{"orderNo":"A1","amount":1.50}';
const T = '1700000000000';
const NOW = 1700000000000;
$sig = BlockhookWebhook::sign(SECRET, BlockhookWebhook::message('sorted', BODY, T));
$badTimes = ['', '1.7e12', '-1700000000000', '+1700000000000', ' 1700000000000',
    '17000000000000000000', "\u{0661}\u{0667}\u{0660}\u{0660}", "1700000000000\n"];
$badSignatures = ['', 'abc', substr($sig, 0, 63), $sig . '0', str_repeat('g', 64), ' ' . substr($sig, 1),
    $sig . "\n"];
$badBodies = ['[1]', '"x"', '', 'null', '{"a":1,"a":2}', '{"a":1,"\\u0061":2}', '{"x":{"a":1,"a":2}}',
    '{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":-}', '{"a":1e}', '{"a":+1}',
    '{"a":1,}', '{"a":[1,]}', '{"a" 1}', '{"a":1 "b":2}', '{"a":NaN}',
    '{"a":Infinity}', '{"a":tru}', "{'a':1}", '{"a":"\\ud800"}',
    '{"a":"\\udc00x"}', '{"\\ud800":null}', '{"a":"\\x"}', "{\"a\":\"x\ty\"}",
    '{"a":1}x', '{"a":1}{}', "\xef\xbb\xbf{}", "{\"a\":\"\xff\"}", "{\"a\":\"\xc3\"}",
    '{"a":' . str_repeat('[', 100000) . str_repeat(']', 100000) . '}'];

$fixedChecks = [
    'header names are case-insensitive' => function () use ($sig) {
        expectOk(['blockatm-request-time' => T, 'BLOCKATM-SIGNATURE-V2' => $sig], BODY, SECRET, 'sorted', NOW);
    },
    'uppercase hex signature accepted' => function () use ($sig) {
        expectOk(headers(T, strtoupper($sig)), BODY, SECRET, 'sorted', NOW);
    },
    'rotation: any listed secret' => function () use ($sig) {
        expectOk(headers(T, $sig), BODY, ['sck_old_wrong', SECRET], 'sorted', NOW);
    },
    'window edges accepted' => function () use ($sig) {
        expectOk(headers(T, $sig), BODY, SECRET, 'sorted', NOW + WINDOW - 1);
        expectOk(headers(T, $sig), BODY, SECRET, 'sorted', NOW - WINDOW + 1);
    },
    'missing time header' => function () use ($sig) {
        expectReason(BlockhookWebhook::MISSING_HEADER, ['BlockATM-Signature-V2' => $sig], BODY, SECRET, 'sorted', NOW);
    },
    'missing signature header' => function () {
        expectReason(BlockhookWebhook::MISSING_HEADER, ['BlockATM-Request-Time' => T], BODY, SECRET, 'sorted', NOW);
    },
    'time not a plain integer' => function () use ($sig, $badTimes) {
        foreach ($badTimes as $t) {
            expectReason(BlockhookWebhook::TIME_NOT_INTEGER, headers($t, $sig), BODY, SECRET, 'sorted', NOW);
        }
    },
    'too old' => function () use ($sig) {
        expectReason(BlockhookWebhook::TOO_OLD, headers(T, $sig), BODY, SECRET, 'sorted', NOW + WINDOW);
    },
    'too new' => function () use ($sig) {
        expectReason(BlockhookWebhook::TOO_NEW, headers(T, $sig), BODY, SECRET, 'sorted', NOW - WINDOW);
    },
    'custom window' => function () use ($sig) {
        expectReason(BlockhookWebhook::TOO_OLD, headers(T, $sig), BODY, SECRET, 'sorted', NOW + 1000, 1000);
    },
    'malformed signature' => function () use ($badSignatures) {
        foreach ($badSignatures as $s) {
            expectReason(BlockhookWebhook::MALFORMED_SIGNATURE, headers(T, $s), BODY, SECRET, 'sorted', NOW);
        }
    },
    'wrong secret' => function () use ($sig) {
        expectReason(BlockhookWebhook::MISMATCH, headers(T, $sig), BODY, ['sck_wrong', 'sck_other'], 'sorted', NOW);
    },
    'invalid bodies rejected in sorted and either mode' => function () use ($sig, $badBodies) {
        foreach ($badBodies as $b) {
            expectReason(BlockhookWebhook::NOT_JSON_OBJECT, headers(T, $sig), $b, SECRET, 'sorted', NOW);
            expectReason(BlockhookWebhook::NOT_JSON_OBJECT, headers(T, $sig), $b, SECRET, 'either', NOW);
        }
    },
    'raw mode does not parse the body' => function () {
        $rawSig = BlockhookWebhook::sign(SECRET, BlockhookWebhook::message('raw', 'not json', T));
        expectOk(headers(T, $rawSig), 'not json', SECRET, 'raw', NOW);
    },
    'sorted mode rejects a raw-mode signature' => function () {
        $rawSig = BlockhookWebhook::sign(SECRET, BlockhookWebhook::message('raw', BODY, T));
        expectReason(BlockhookWebhook::MISMATCH, headers(T, $rawSig), BODY, SECRET, 'sorted', NOW);
    },
    'moderate nesting accepted' => function () {
        $c = BlockhookWebhook::canonical('{"a":' . str_repeat('[', 50) . '1' . str_repeat(']', 50) . '}');
        if ($c !== '1') {
            fail("bad canonical $c");
        }
    },
    // PHP only: header arrays taken from $_SERVER.
    '$_SERVER style header names' => function () use ($sig) {
        expectOk(['HTTP_BLOCKATM_REQUEST_TIME' => T, 'HTTP_BLOCKATM_SIGNATURE_V2' => $sig], BODY, SECRET, 'sorted', NOW);
    },
];

if ($argc < 2) {
    fwrite(STDERR, "usage: php test_vectors.php vectors.json [more.json ...]\n");
    exit(2);
}
$passed = 0;
$failed = 0;
$run = function (string $name, callable $check) use (&$passed, &$failed) {
    try {
        $check();
        $passed++;
    } catch (Throwable $e) {
        $failed++;
        echo "FAIL $name: {$e->getMessage()}\n";
    }
};
foreach (array_slice($argv, 1) as $file) {
    $doc = json_decode(file_get_contents($file), true, 512, JSON_THROW_ON_ERROR);
    foreach ($doc['vectors'] as $v) {
        $run(basename($file) . ': ' . $v['name'], function () use ($v) {
            checkVector($v);
        });
    }
}
foreach ($fixedChecks as $name => $check) {
    $run($name, $check);
}
echo "php: $passed passed, $failed failed\n";
exit($failed > 0 ? 1 : 0);
