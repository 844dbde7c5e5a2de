#!/usr/bin/env node
'use strict';
// Check blockhook-verify.js against conformance vectors.
//
// Usage: node test-vectors.js path/to/vectors.json [more.json ...]
//
// Each vector is one case (message, signature, verify accepts it in its mode and in 'either',
// verify rejects a tampered body and a stale time); the fixed rejection checks below are one case
// each. Prints "FAIL ..." lines and a final "node: N passed, M failed"; exits 1 on any failure.

const fs = require('fs');
const path = require('path');
const bv = require('./blockhook-verify');

const { Reason } = bv;
const WINDOW = bv.DEFAULT_WINDOW_MS;

const headers = (time, signature) => ({ 'BlockATM-Request-Time': time, 'BlockATM-Signature-V2': signature });

function fail(text) {
  throw new Error(text);
}

function expectOk(hdrs, body, secrets, { mode = 'sorted', now, window = WINDOW } = {}) {
  return bv.verify(hdrs, body, secrets, { mode, windowMs: window, nowMs: now });
}

function expectReason(reason, hdrs, body, secrets, { mode = 'sorted', now, window = WINDOW } = {}) {
  try {
    bv.verify(hdrs, body, secrets, { mode, windowMs: window, nowMs: now });
  } catch (e) {
    if (!(e instanceof bv.WebhookVerificationError)) throw e;
    if (e.reason !== reason) fail(`expected ${reason}, got ${e.reason} (${e.detail})`);
    return;
  }
  fail(`expected ${reason}, but verify accepted`);
}

function checkVector(v) {
  const body = Buffer.from(v.body, 'utf8');
  const msg = bv.message(v.mode, body, v.time);
  if (!msg.equals(Buffer.from(v.message, 'utf8'))) {
    fail(`message ${JSON.stringify(msg.toString('utf8'))} != expected ${JSON.stringify(v.message)}`);
  }
  const sig = bv.sign(v.secret, msg);
  if (sig !== v.signature) fail(`signature ${sig} != expected ${v.signature}`);
  const t = Number(v.time);
  const hdrs = headers(v.time, v.signature);
  const got = expectOk(hdrs, body, v.secret, { mode: v.mode, now: t + 1000 });
  if (got !== v.mode) fail(`verify returned ${got}`);
  expectOk(hdrs, body, [v.secret], { mode: 'either', now: t - 1000 });
  const tampered = Buffer.concat([Buffer.from('{"tampered":true,"original":'), body, Buffer.from('}')]);
  expectReason(Reason.MISMATCH, hdrs, tampered, v.secret, { mode: v.mode, now: t });
  expectReason(Reason.TOO_OLD, hdrs, body, v.secret, { mode: v.mode, now: t + WINDOW });
}

// Fixed checks of every rejection reason (same list in every language's test).
const SECRET = 'sck_builtin_test';
const BODY = Buffer.from('{"orderNo":"A1","amount":1.50}');
const T = '1700000000000';
const NOW = 1700000000000;
const SIG = bv.sign(SECRET, bv.message('sorted', BODY, T));
const BAD_TIMES = ['', '1.7e12', '-1700000000000', '+1700000000000', ' 1700000000000',
  '17000000000000000000', '\u0661\u0667\u0660\u0660', '1700000000000\n'];
const BAD_SIGNATURES = ['', 'abc', SIG.slice(0, 63), `${SIG}0`, 'g'.repeat(64), ` ${SIG.slice(1)}`, `${SIG}\n`];
const BAD_BODIES = ['[1]', '"x"', '', 'null', '{"a":1,"a":2}', '{"a":1,"\\u0061":2}',
  '{"x":{"a":1,"a":2}}', '{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":-}', '{"a":1e}', '{"a":+1}',
  '{"a":1,}', '{"a":[1,]}', '{"a" 1}', '{"a":1 "b":2}', '{"a":NaN}',
  '{"a":Infinity}', '{"a":tru}', "{'a':1}", '{"a":"\\ud800"}',
  '{"a":"\\udc00x"}', '{"\\ud800":null}', '{"a":"\\x"}', '{"a":"x\ty"}',
  '{"a":1}x', '{"a":1}{}', `{"a":${'['.repeat(100000)}${']'.repeat(100000)}}`]
  .map((s) => Buffer.from(s, 'utf8'))
  .concat([
    Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), // BOM + {}
    Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), // {"a":"<ff>"}
    Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x22, 0x7d]), // {"a":"<c3>"}
  ]);
const RAW_SIG = bv.sign(SECRET, bv.message('raw', Buffer.from('not json'), T));

const FIXED_CHECKS = [
  ['header names are case-insensitive', () => expectOk(
    { 'blockatm-request-time': T, 'BLOCKATM-SIGNATURE-V2': SIG }, BODY, SECRET, { now: NOW })],
  ['uppercase hex signature accepted', () => expectOk(
    headers(T, SIG.toUpperCase()), BODY, SECRET, { now: NOW })],
  ['rotation: any listed secret', () => expectOk(
    headers(T, SIG), BODY, ['sck_old_wrong', SECRET], { now: NOW })],
  ['window edges accepted', () => {
    expectOk(headers(T, SIG), BODY, SECRET, { now: NOW + WINDOW - 1 });
    expectOk(headers(T, SIG), BODY, SECRET, { now: NOW - WINDOW + 1 });
  }],
  ['missing time header', () => expectReason(
    Reason.MISSING_HEADER, { 'BlockATM-Signature-V2': SIG }, BODY, SECRET, { now: NOW })],
  ['missing signature header', () => expectReason(
    Reason.MISSING_HEADER, { 'BlockATM-Request-Time': T }, BODY, SECRET, { now: NOW })],
  ['time not a plain integer', () => BAD_TIMES.forEach((t) => expectReason(
    Reason.TIME_NOT_INTEGER, headers(t, SIG), BODY, SECRET, { now: NOW }))],
  ['too old', () => expectReason(
    Reason.TOO_OLD, headers(T, SIG), BODY, SECRET, { now: NOW + WINDOW })],
  ['too new', () => expectReason(
    Reason.TOO_NEW, headers(T, SIG), BODY, SECRET, { now: NOW - WINDOW })],
  ['custom window', () => expectReason(
    Reason.TOO_OLD, headers(T, SIG), BODY, SECRET, { now: NOW + 1000, window: 1000 })],
  ['malformed signature', () => BAD_SIGNATURES.forEach((s) => expectReason(
    Reason.MALFORMED_SIGNATURE, headers(T, s), BODY, SECRET, { now: NOW }))],
  ['wrong secret', () => expectReason(
    Reason.MISMATCH, headers(T, SIG), BODY, ['sck_wrong', 'sck_other'], { now: NOW })],
  ['invalid bodies rejected in sorted and either mode', () => BAD_BODIES.forEach((b) => {
    expectReason(Reason.NOT_JSON_OBJECT, headers(T, SIG), b, SECRET, { now: NOW });
    expectReason(Reason.NOT_JSON_OBJECT, headers(T, SIG), b, SECRET, { mode: 'either', now: NOW });
  })],
  ['raw mode does not parse the body', () => expectOk(
    headers(T, RAW_SIG), Buffer.from('not json'), SECRET, { mode: 'raw', now: NOW })],
  ['sorted mode rejects a raw-mode signature', () => expectReason(
    Reason.MISMATCH, headers(T, bv.sign(SECRET, bv.message('raw', BODY, T))), BODY, SECRET, { now: NOW })],
  ['moderate nesting accepted', () => {
    const c = bv.canonical(`{"a":${'['.repeat(50)}1${']'.repeat(50)}}`);
    if (c !== '1') fail(`bad canonical ${c}`);
  }],
];

function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error('usage: node test-vectors.js vectors.json [more.json ...]');
    process.exit(2);
  }
  let passed = 0;
  let failed = 0;
  const run = (name, fn) => {
    try {
      fn();
      passed++;
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${e.message}`);
    }
  };
  for (const file of files) {
    const { vectors } = JSON.parse(fs.readFileSync(file, 'utf8'));
    for (const v of vectors) run(`${path.basename(file)}: ${v.name}`, () => checkVector(v));
  }
  for (const [name, fn] of FIXED_CHECKS) run(name, fn);
  console.log(`node: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
