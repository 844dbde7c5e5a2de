'use strict';
/**
 * Verify BlockATM-Signature-V2 webhooks (as sent by blockhook). Node.js 12+, no dependencies.
 *
 * Copy this file into your project. Typical use (Express shown; pass the *raw* body bytes, so
 * mount express.raw() on the webhook route instead of express.json()):
 *
 *   const { verify, WebhookVerificationError } = require('./blockhook-verify');
 *
 *   app.post('/webhooks/blockatm', express.raw({ type: '*\/*' }), (req, res) => {
 *     try {
 *       verify(req.headers, req.body, ['sck_...'], { mode: 'sorted' });
 *     } catch (e) {
 *       if (e instanceof WebhookVerificationError) return res.status(401).send(e.reason);
 *       throw e;
 *     }
 *     queue.push(req.body);          // do the work asynchronously
 *     res.sendStatus(200);           // only a 200 acknowledges the delivery
 *   });
 *
 * Signature (contract section 2):
 *   signature = lowercase_hex(HMAC_SHA256(key = UTF-8 bytes of the secret, message))
 *   sorted:  message = canonical(body) + "&time=" + t   ("time=" + t when canonical is empty)
 *   raw:     message = <exact body bytes> + "&time=" + t
 */

const crypto = require('crypto');

const TIME_HEADER = 'BlockATM-Request-Time';
const SIGNATURE_HEADER = 'BlockATM-Signature-V2';
const DEFAULT_WINDOW_MS = 5 * 60 * 1000;

/** Values of WebhookVerificationError#reason. */
const Reason = Object.freeze({
  MISSING_HEADER: 'missing_header',
  TIME_NOT_INTEGER: 'time_not_integer',
  TOO_OLD: 'too_old',
  TOO_NEW: 'too_new',
  MALFORMED_SIGNATURE: 'malformed_signature',
  NOT_JSON_OBJECT: 'not_json_object',
  MISMATCH: 'mismatch',
});

class WebhookVerificationError extends Error {
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.name = 'WebhookVerificationError';
    this.reason = reason;
    this.detail = detail;
  }
}

// ---------------------------------------------------------------------------------------------
// A small strict JSON parser that keeps number literals as written.
// JSON.parse would turn 2000.00 into 2000 and 1E-7 into 1e-7, which breaks the signature.
// Tree: object -> Map (document order), array -> Array, number -> JsonNumber,
//       string -> string, true/false -> boolean, null -> null.
// ---------------------------------------------------------------------------------------------

class JsonNumber {
  constructor(literal) {
    this.literal = literal;
  }
}

const MAX_DEPTH = 512;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

function parseJson(text) {
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at offset ${i}`);
  };
  const skipWs = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const expect = (ch) => {
    if (text[i] !== ch) fail(`expected '${ch}'`);
    i++;
  };
  const hex4 = () => {
    const h = text.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) fail('bad \\u escape');
    i += 4;
    return parseInt(h, 16);
  };

  function string() {
    expect('"');
    let out = '';
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text[i++];
      if (c === '"') return out;
      if (c < ' ') fail('control character in string');
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = text[i++];
      if (Object.prototype.hasOwnProperty.call(ESCAPES, e)) {
        out += ESCAPES[e];
      } else if (e === 'u') {
        const cp = hex4();
        if (cp >= 0xdc00 && cp <= 0xdfff) fail('lone low surrogate');
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (text.slice(i, i + 2) !== '\\u') fail('lone high surrogate');
          i += 2;
          const lo = hex4();
          if (lo < 0xdc00 || lo > 0xdfff) fail('bad low surrogate');
          out += String.fromCharCode(cp, lo);
        } else {
          out += String.fromCharCode(cp);
        }
      } else {
        fail('bad escape');
      }
    }
  }

  function value(depth) {
    if (depth > MAX_DEPTH) fail('nested too deeply');
    skipWs();
    const c = text[i];
    if (c === '{') {
      i++;
      const map = new Map();
      skipWs();
      if (text[i] === '}') {
        i++;
        return map;
      }
      for (;;) {
        skipWs();
        const key = string();
        if (map.has(key)) fail(`duplicate key ${JSON.stringify(key)}`);
        skipWs();
        expect(':');
        map.set(key, value(depth + 1));
        skipWs();
        if (text[i] === ',') {
          i++;
          continue;
        }
        expect('}');
        return map;
      }
    }
    if (c === '[') {
      i++;
      const items = [];
      skipWs();
      if (text[i] === ']') {
        i++;
        return items;
      }
      for (;;) {
        items.push(value(depth + 1));
        skipWs();
        if (text[i] === ',') {
          i++;
          continue;
        }
        expect(']');
        return items;
      }
    }
    if (c === '"') return string();
    for (const [word, val] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return val;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail('unexpected character');
    i += m[0].length;
    return new JsonNumber(m[0]);
  }

  const result = value(0);
  skipWs();
  if (i !== text.length) fail('trailing data');
  return result;
}

// ---------------------------------------------------------------------------------------------
// Canonical form (mode "sorted")
// ---------------------------------------------------------------------------------------------

function toBuffer(body) {
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength); // Buffer or Uint8Array
}

function scalarText(v) {
  return v instanceof JsonNumber ? v.literal : String(v); // string, number literal, true/false
}

function objectParts(map, parts) {
  // Sort keys by their UTF-8 bytes. (JS string comparison uses UTF-16 code units, which orders
  // characters above U+FFFF before U+E000..U+FFFF: wrong here.)
  const keys = [...map.keys()]
    .map((k) => [k, Buffer.from(k, 'utf8')])
    .sort((a, b) => Buffer.compare(a[1], b[1]))
    .map(([k]) => k);
  for (const key of keys) {
    const v = map.get(key);
    if (v === null) continue;
    if (v instanceof Map) objectParts(v, parts); // nested object: its pairs, no key prefix
    else if (Array.isArray(v)) arrayParts(v, parts); // array: its elements, no key
    else parts.push(`${key}=${scalarText(v)}`);
  }
  return parts;
}

function arrayParts(items, parts) {
  for (const v of items) {
    if (v === null) continue;
    if (v instanceof Map) objectParts(v, parts);
    else if (Array.isArray(v)) arrayParts(v, parts);
    else parts.push(scalarText(v)); // scalar elements are bare
  }
  return parts;
}

/** Canonical string of a JSON object body (Buffer, Uint8Array or string); throws on invalid. */
function canonical(body) {
  const bytes = toBuffer(body);
  // Strict UTF-8; keep a BOM so that the parser rejects it like any other stray character.
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  const tree = parseJson(text);
  if (!(tree instanceof Map)) throw new SyntaxError('the body is not a JSON object');
  return objectParts(tree, []).join('&');
}

/** The exact bytes that are HMAC'd (a Buffer). mode is 'sorted' or 'raw'. */
function message(mode, body, time) {
  if (mode === 'raw') return Buffer.concat([toBuffer(body), Buffer.from(`&time=${time}`)]);
  if (mode === 'sorted') {
    const c = canonical(body);
    return Buffer.from(c ? `${c}&time=${time}` : `time=${time}`, 'utf8');
  }
  throw new TypeError("mode must be 'sorted' or 'raw'");
}

/** Lowercase hex HMAC-SHA256 of the message, keyed with the UTF-8 bytes of the secret. */
function sign(secret, msg) {
  return crypto.createHmac('sha256', Buffer.from(secret, 'utf8')).update(msg).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

function header(headers, name) {
  // Node's req.headers (lower-case keys), a plain object, a Map or a fetch Headers object.
  const entries = typeof headers.entries === 'function' ? headers.entries() : Object.entries(headers);
  const wanted = name.toLowerCase();
  for (const [key, value] of entries) {
    if (key.toLowerCase() === wanted) return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

/**
 * Verify one webhook request. Returns the mode that matched ('sorted' or 'raw'), or throws a
 * WebhookVerificationError whose .reason is one of Reason.
 *
 * @param headers   request headers (names are compared case-insensitively)
 * @param rawBody   the exact request body bytes (Buffer/Uint8Array)
 * @param secrets   one secret string or an array of them (e.g. old and new during a rotation)
 * @param options   { mode: 'sorted' | 'raw' | 'either' = 'sorted',
 *                    windowMs = 300000 (keep it <= 15 minutes), nowMs = Date.now() }
 */
function verify(headers, rawBody, secrets, { mode = 'sorted', windowMs = DEFAULT_WINDOW_MS, nowMs } = {}) {
  if (!['sorted', 'raw', 'either'].includes(mode)) {
    throw new TypeError("mode must be 'sorted', 'raw' or 'either'");
  }
  const keys = typeof secrets === 'string' ? [secrets] : [...secrets];
  if (keys.length === 0 || !keys.every((s) => typeof s === 'string' && s !== '')) {
    throw new TypeError('give at least one non-empty secret');
  }
  const reject = (reason, detail) => {
    throw new WebhookVerificationError(reason, detail);
  };

  const time = header(headers, TIME_HEADER);
  const signature = header(headers, SIGNATURE_HEADER);
  if (time === undefined) reject(Reason.MISSING_HEADER, `no ${TIME_HEADER} header`);
  if (signature === undefined) reject(Reason.MISSING_HEADER, `no ${SIGNATURE_HEADER} header`);

  // ASCII digits only (no sign, spaces or exponent), at most 18 of them.
  if (!/^[0-9]{1,18}$/.test(time)) {
    reject(Reason.TIME_NOT_INTEGER, `${TIME_HEADER} is not a plain integer: ${JSON.stringify(time)}`);
  }
  const age = (nowMs === undefined ? Date.now() : nowMs) - Number(time);
  if (age >= windowMs) reject(Reason.TOO_OLD, `request time is ${age} ms in the past`);
  if (-age >= windowMs) reject(Reason.TOO_NEW, `request time is ${-age} ms in the future`);

  if (!/^[0-9a-fA-F]{64}$/.test(signature)) {
    reject(Reason.MALFORMED_SIGNATURE, `${SIGNATURE_HEADER} is not 64 hex characters`);
  }
  const given = Buffer.from(signature.toLowerCase(), 'ascii');

  const candidates = []; // [mode, message]
  let bodyError = null;
  if (mode === 'raw' || mode === 'either') candidates.push(['raw', message('raw', rawBody, time)]);
  if (mode === 'sorted' || mode === 'either') {
    try {
      candidates.push(['sorted', message('sorted', rawBody, time)]);
    } catch (e) {
      bodyError = e.message;
    }
  }

  let matched = null;
  for (const [candidateMode, msg] of candidates) {
    for (const secret of keys) {
      const expected = Buffer.from(sign(secret, msg), 'ascii');
      // timingSafeEqual runs in constant time; keep looping so timing reveals nothing.
      if (crypto.timingSafeEqual(expected, given) && matched === null) matched = candidateMode;
    }
  }
  if (matched) return matched;
  if (bodyError !== null) reject(Reason.NOT_JSON_OBJECT, bodyError);
  return reject(Reason.MISMATCH, 'signature does not match');
}

module.exports = {
  canonical,
  message,
  sign,
  verify,
  parseJson,
  JsonNumber,
  Reason,
  WebhookVerificationError,
  TIME_HEADER,
  SIGNATURE_HEADER,
  DEFAULT_WINDOW_MS,
};
