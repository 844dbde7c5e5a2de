//! A small JSON parser that keeps every literal exactly as it appears in the body.
//!
//! The `sorted` message is built from the *received bytes*: number literals are copied verbatim
//! (`2000.00`, `1E-7`, `-0`, 30-digit integers), so no general-purpose JSON library (which would
//! turn numbers into floats) can be used. This parser does only what canonicalisation needs:
//!
//! - it validates strictly (RFC 8259 grammar, valid UTF-8, no lone surrogates in `\u` escapes,
//!   at most [`MAX_DEPTH`] nested containers, exactly one top-level object, nothing but
//!   whitespace after it);
//! - it produces a flat, pre-order list of nodes whose strings and numbers are *spans* of the
//!   input, so nothing is copied or decoded unless a string really contains a backslash;
//! - it is iterative (an explicit stack, bounded by [`MAX_DEPTH`]), so hostile nesting returns
//!   [`Error::TooDeep`] instead of overflowing the call stack.
//!
//! Duplicate keys are detected when an object's members are sorted (`sorted_members`), which
//! canonicalisation does anyway; [`validate_object`] runs the same check over every object.

use std::borrow::Cow;

use crate::Error;

/// The deepest nesting of objects and arrays accepted; the top-level object is level 1.
pub const MAX_DEPTH: usize = 128;

/// Checks that `bytes` is exactly one JSON object that the `sorted` mode can canonicalise.
///
/// That is: valid UTF-8, valid JSON, a top-level object, nesting at most [`MAX_DEPTH`] levels,
/// no key twice within one object (compared after decoding escapes), and nothing after the
/// object but whitespace.
///
/// ```
/// use blockhook_sig::{json, Error};
/// assert!(json::validate_object(br#"{"a": [1, {"b": null}]}"#).is_ok());
/// assert_eq!(json::validate_object(b"[1]"), Err(Error::NotAnObject));
/// assert_eq!(json::validate_object(br#"{"a":1,"a":2}"#), Err(Error::DuplicateKey("a".into())));
/// ```
pub fn validate_object(bytes: &[u8]) -> Result<(), Error> {
    let doc = parse(bytes)?;
    let mut scratch = Vec::new();
    for (index, node) in doc.nodes.iter().enumerate() {
        if node.kind == Kind::Object {
            scratch.clear();
            sorted_members(&doc, index, &mut scratch)?;
        }
    }
    Ok(())
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Number,
    True,
    False,
    Null,
}

/// A range of the input; for strings, the bytes between the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// The string contains at least one backslash escape, so it must be decoded before use.
    pub(crate) escaped: bool,
}

const NO_KEY: Span = Span {
    start: 0,
    end: 0,
    escaped: false,
};

/// One JSON value, in pre-order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    /// Strings: the contents between the quotes. Numbers: the literal. Others: unused.
    pub(crate) value: Span,
    /// The member's key when the parent is an object (the contents between the quotes).
    pub(crate) key: Span,
    /// Index of the first node after this one's subtree: its next sibling, if any.
    pub(crate) next: usize,
}

/// A parsed body: the input and its nodes in pre-order; node 0 is the top-level object.
#[derive(Debug)]
pub(crate) struct Doc<'a> {
    pub(crate) src: &'a [u8],
    pub(crate) nodes: Vec<Node>,
}

impl<'a> Doc<'a> {
    /// The raw bytes of a span.
    pub(crate) fn bytes(&self, span: Span) -> &'a [u8] {
        self.src.get(span.start..span.end).unwrap_or_default()
    }

    /// Indices of the children of container `index`, in document order.
    pub(crate) fn children(&self, index: usize) -> Children<'_, 'a> {
        let end = self.nodes.get(index).map_or(index, |n| n.next);
        Children {
            doc: self,
            at: index + 1,
            end,
        }
    }
}

/// Iterator over the children of one container (see [`Doc::children`]).
pub(crate) struct Children<'d, 'a> {
    doc: &'d Doc<'a>,
    at: usize,
    end: usize,
}

impl Iterator for Children<'_, '_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.at >= self.end {
            return None;
        }
        let here = self.at;
        // `next` is always greater than the node's own index; guard anyway so a bug cannot loop.
        self.at = self
            .doc
            .nodes
            .get(here)
            .map_or(self.end, |n| n.next.max(here + 1));
        Some(here)
    }
}

/// One member of an object, ready for sorting: its decoded key and its value's node index.
#[derive(Debug)]
pub(crate) struct Member<'a> {
    pub(crate) key: Cow<'a, [u8]>,
    /// The key's first 8 bytes, big-endian, zero-padded: orders most keys without a `memcmp`.
    prefix: u64,
    pub(crate) node: usize,
}

/// The first 8 bytes of `key` as a big-endian number, zero-padded. Comparing prefixes first and
/// the full keys only on a tie gives exactly the byte order of the keys.
fn prefix(key: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = key.len().min(8);
    if let (Some(dst), Some(src)) = (buf.get_mut(..n), key.get(..n)) {
        dst.copy_from_slice(src);
    }
    u64::from_be_bytes(buf)
}

/// Appends the members of object `index` to `out`, sorted by decoded key bytes, and fails with
/// [`Error::DuplicateKey`] when two keys are equal. Keys without escapes are borrowed.
pub(crate) fn sorted_members<'a>(
    doc: &Doc<'a>,
    index: usize,
    out: &mut Vec<Member<'a>>,
) -> Result<(), Error> {
    let base = out.len();
    for child in doc.children(index) {
        let Some(node) = doc.nodes.get(child) else {
            break;
        };
        let raw = doc.bytes(node.key);
        let key = if node.key.escaped {
            let mut decoded = Vec::with_capacity(raw.len());
            decode_into(raw, &mut decoded);
            Cow::Owned(decoded)
        } else {
            Cow::Borrowed(raw)
        };
        out.push(Member {
            prefix: prefix(&key),
            key,
            node: child,
        });
    }
    let members = out.get_mut(base..).unwrap_or_default();
    members.sort_unstable_by(|a, b| a.prefix.cmp(&b.prefix).then_with(|| a.key.cmp(&b.key)));
    if let Some(pair) = members
        .windows(2)
        .find(|w| w[0].prefix == w[1].prefix && w[0].key == w[1].key)
    {
        return Err(Error::DuplicateKey(
            String::from_utf8_lossy(&pair[0].key).into_owned(),
        ));
    }
    Ok(())
}

/// Appends the decoded form of a string's raw contents (the bytes between the quotes).
///
/// The input must have been validated by [`parse`]; on malformed input this never panics but
/// copies what it cannot decode.
pub(crate) fn decode_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        // Copy the run of plain bytes up to the next backslash in one go.
        let run_end = raw[i..]
            .iter()
            .position(|&b| b == b'\\')
            .map_or(raw.len(), |p| i + p);
        out.extend_from_slice(&raw[i..run_end]);
        i = run_end;
        if i >= raw.len() {
            break;
        }
        let escape = raw.get(i + 1).copied();
        let simple = match escape {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0c),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            i += 2;
            continue;
        }
        if escape == Some(b'u') {
            if let Some((ch, used)) = decode_unicode_escape(raw, i) {
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += used;
                continue;
            }
        }
        // Unreachable after validation: copy the backslash and move on.
        out.push(b'\\');
        i += 1;
    }
}

/// Reads four hex digits at `at`.
fn hex4(raw: &[u8], at: usize) -> Option<u32> {
    let digits = raw.get(at..at + 4)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
}

/// Decodes `\uXXXX` (or a surrogate pair `\uD8xx\uDCxx`) starting at the backslash at `at`.
/// Returns the character and the number of bytes used; `None` if malformed or a lone surrogate.
fn decode_unicode_escape(raw: &[u8], at: usize) -> Option<(char, usize)> {
    let first = hex4(raw, at + 2)?;
    match first {
        0xD800..=0xDBFF => {
            if raw.get(at + 6) != Some(&b'\\') || raw.get(at + 7) != Some(&b'u') {
                return None;
            }
            let second = hex4(raw, at + 8)?;
            if !(0xDC00..=0xDFFF).contains(&second) {
                return None;
            }
            let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            Some((char::from_u32(code)?, 12))
        }
        0xDC00..=0xDFFF => None,
        _ => Some((char::from_u32(first)?, 6)),
    }
}

/// Parses `src` as exactly one JSON object (see [`validate_object`], except duplicate keys,
/// which are found when members are sorted).
pub(crate) fn parse(src: &[u8]) -> Result<Doc<'_>, Error> {
    if let Err(e) = std::str::from_utf8(src) {
        return Err(Error::InvalidJson {
            offset: e.valid_up_to(),
            reason: "invalid UTF-8",
        });
    }
    let mut p = Parser { src, pos: 0 };
    p.skip_ws();
    match p.peek() {
        Some(b'{') => {}
        Some(0xEF) if src.get(p.pos..p.pos + 3) == Some(b"\xEF\xBB\xBF") => {
            return Err(p.fail("a byte order mark is not allowed"));
        }
        // Empty, another JSON value, or not JSON at all: in every case, not an object.
        _ => return Err(Error::NotAnObject),
    }

    // A typical webhook has one value per ~20 bytes; over-reserving is cheap, regrowing is not.
    let mut nodes: Vec<Node> = Vec::with_capacity(src.len() / 16 + 4);
    // Indices (into `nodes`) of the containers currently open, innermost last.
    let mut open: Vec<usize> = Vec::with_capacity(8);
    let mut key = NO_KEY;

    'value: loop {
        // Parse one value at the cursor; it belongs to the innermost open container (if any)
        // and, when that container is an object, carries `key`.
        p.skip_ws();
        let start = p.pos;
        let index = nodes.len();
        let (kind, value) = match p.peek() {
            Some(open_byte @ (b'{' | b'[')) => {
                if open.len() >= MAX_DEPTH {
                    return Err(Error::TooDeep);
                }
                p.pos += 1;
                let (kind, close) = if open_byte == b'{' {
                    (Kind::Object, b'}')
                } else {
                    (Kind::Array, b']')
                };
                let value = Span {
                    start,
                    end: start,
                    escaped: false,
                };
                nodes.push(Node {
                    kind,
                    value,
                    key,
                    next: 0,
                });
                p.skip_ws();
                if p.peek() == Some(close) {
                    p.pos += 1;
                    if let Some(node) = nodes.get_mut(index) {
                        node.next = index + 1;
                    }
                    // Empty container: it is complete; fall through to "after a value".
                } else {
                    open.push(index);
                    key = if kind == Kind::Object {
                        p.key()?
                    } else {
                        NO_KEY
                    };
                    continue 'value;
                }
                (None, value)
            }
            Some(b'"') => (Some(Kind::String), p.string()?),
            Some(b'-' | b'0'..=b'9') => (Some(Kind::Number), p.number()?),
            Some(b't') => (Some(Kind::True), p.literal(b"true")?),
            Some(b'f') => (Some(Kind::False), p.literal(b"false")?),
            Some(b'n') => (Some(Kind::Null), p.literal(b"null")?),
            Some(_) => return Err(p.fail("expected a value")),
            None => return Err(p.fail("unexpected end of input")),
        };
        if let Some(kind) = kind {
            nodes.push(Node {
                kind,
                value,
                key,
                next: index + 1,
            });
        }

        // After a complete value: a separator continues the innermost container, a closing
        // bracket completes it (and possibly its parents).
        loop {
            let Some(&top) = open.last() else {
                break 'value;
            };
            let is_object = nodes.get(top).is_some_and(|n| n.kind == Kind::Object);
            p.skip_ws();
            match (p.peek(), is_object) {
                (Some(b','), _) => {
                    p.pos += 1;
                    key = if is_object { p.key()? } else { NO_KEY };
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    p.pos += 1;
                    let next = nodes.len();
                    if let Some(node) = nodes.get_mut(top) {
                        node.next = next;
                    }
                    open.pop();
                }
                (None, _) => return Err(p.fail("unexpected end of input")),
                (Some(_), true) => return Err(p.fail("expected ',' or '}'")),
                (Some(_), false) => return Err(p.fail("expected ',' or ']'")),
            }
        }
    }

    p.skip_ws();
    if p.pos != src.len() {
        return Err(p.fail("unexpected data after the JSON object"));
    }
    Ok(Doc { src, nodes })
}

/// Length of the run of plain string bytes at the start of `bytes`: bytes other than the closing
/// quote, a backslash or a control character. Eight bytes at a time (SWAR), since strings such as
/// transaction hashes and addresses make up most of a webhook body.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // High bit set in each byte of `v` that is zero (exact for the lowest such byte).
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut run = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // Bytes below 0x20 (ASCII only: `!w` drops bytes with the high bit), '"' and '\\'.
        let stop = (w.wrapping_sub(ONES * 0x20) & !w & HIGHS)
            | zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')));
        if stop != 0 {
            return run + (stop.trailing_zeros() / 8) as usize;
        }
        run += 8;
    }
    let tail = chunks.remainder();
    run + tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(tail.len())
}

/// The cursor over the input.
struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn fail(&self, reason: &'static str) -> Error {
        Error::InvalidJson {
            offset: self.pos,
            reason,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// A member's key and the `:` after it; the cursor may be before whitespace.
    fn key(&mut self) -> Result<Span, Error> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(self.fail("expected a string key"));
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.fail("expected ':' after the key"));
        }
        self.pos += 1;
        Ok(key)
    }

    /// A string starting at the opening quote; returns the span between the quotes.
    fn string(&mut self) -> Result<Span, Error> {
        self.pos += 1; // opening quote
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Fast path: skip plain bytes (UTF-8 was validated up front).
            self.pos += plain_run(self.src.get(self.pos..).unwrap_or_default());
            match self.peek() {
                Some(b'"') => {
                    let span = Span {
                        start,
                        end: self.pos,
                        escaped,
                    };
                    self.pos += 1;
                    return Ok(span);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => return Err(self.fail("control character in a string (must be escaped)")),
                None => return Err(self.fail("unterminated string")),
            }
        }
    }

    /// One escape sequence starting at the backslash.
    fn escape(&mut self) -> Result<(), Error> {
        match self.src.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let Some(unit) = hex4(self.src, self.pos + 2) else {
                    return Err(self.fail("\\u must be followed by four hex digits"));
                };
                match unit {
                    0xD800..=0xDBFF => match decode_unicode_escape(self.src, self.pos) {
                        Some((_, used)) => {
                            self.pos += used;
                            Ok(())
                        }
                        None => Err(self.fail("unpaired surrogate in a \\u escape")),
                    },
                    0xDC00..=0xDFFF => Err(self.fail("unpaired surrogate in a \\u escape")),
                    _ => {
                        self.pos += 6;
                        Ok(())
                    }
                }
            }
            Some(_) => Err(self.fail("invalid escape sequence")),
            None => Err(self.fail("unterminated string")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number literal: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<Span, Error> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.fail("leading zeros are not allowed in numbers"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fail("invalid number: expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.fail("invalid number: expected a digit after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.fail("invalid number: expected a digit in the exponent"));
            }
        }
        Ok(Span {
            start,
            end: self.pos,
            escaped: false,
        })
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<Span, Error> {
        let start = self.pos;
        if self.src.get(start..start + word.len()) != Some(word) {
            return Err(self.fail("expected a value"));
        }
        self.pos += word.len();
        Ok(Span {
            start,
            end: self.pos,
            escaped: false,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> (usize, &'static str) {
        match validate_object(body.as_bytes()) {
            Err(Error::InvalidJson { offset, reason }) => (offset, reason),
            other => panic!("{body:?}: expected InvalidJson, got {other:?}"),
        }
    }

    #[test]
    fn accepts_valid_objects() {
        for body in [
            "{}",
            " \t\r\n{ } \n",
            r#"{"a":1}"#,
            r#"{"a":-0,"b":1E-7,"c":2000.00,"d":123456789012345678901234567890,"e":1e+5,"f":0.5}"#,
            r#"{"a":true,"b":false,"c":null,"d":"","e":[],"f":{}}"#,
            r#"{"a":[1,[2,[3,{"b":[null]}]]]}"#,
            r#"{"esc":"\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00"}"#,
            "{\"ключ\":\"значение\",\"😀\":\"é\"}",
            r#"{"a\u0062":1,"ab ":2}"#,
        ] {
            assert_eq!(validate_object(body.as_bytes()), Ok(()), "{body}");
        }
    }

    #[test]
    fn rejects_non_objects() {
        for body in [
            "", "   ", "[]", "[{}]", "\"{}\"", "1", "-1", "true", "null", "<html>", "nope", "}",
        ] {
            assert_eq!(
                validate_object(body.as_bytes()),
                Err(Error::NotAnObject),
                "{body:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_json_with_offset_and_reason() {
        assert_eq!(
            invalid("\u{feff}{}"),
            (0, "a byte order mark is not allowed")
        );
        assert_eq!(invalid("{"), (1, "expected a string key"));
        assert_eq!(invalid(r#"{"a""#), (4, "expected ':' after the key"));
        assert_eq!(invalid(r#"{"a":"#), (5, "unexpected end of input"));
        assert_eq!(invalid(r#"{"a":1"#), (6, "unexpected end of input"));
        assert_eq!(invalid(r#"{"a":1,}"#), (7, "expected a string key"));
        assert_eq!(invalid(r#"{"a":[1,]}"#), (8, "expected a value"));
        assert_eq!(invalid(r#"{"a":1 "b":2}"#), (7, "expected ',' or '}'"));
        assert_eq!(invalid(r#"{"a":[1 2]}"#), (8, "expected ',' or ']'"));
        assert_eq!(invalid(r#"{"a":[1}"#), (7, "expected ',' or ']'"));
        assert_eq!(invalid(r#"{a:1}"#), (1, "expected a string key"));
        assert_eq!(
            invalid(r#"{"a":01}"#),
            (6, "leading zeros are not allowed in numbers")
        );
        assert_eq!(
            invalid(r#"{"a":1.}"#),
            (7, "invalid number: expected a digit after '.'")
        );
        assert_eq!(invalid(r#"{"a":.5}"#), (5, "expected a value"));
        assert_eq!(
            invalid(r#"{"a":1e}"#),
            (7, "invalid number: expected a digit in the exponent")
        );
        assert_eq!(
            invalid(r#"{"a":-}"#),
            (6, "invalid number: expected a digit")
        );
        assert_eq!(invalid(r#"{"a":+1}"#), (5, "expected a value"));
        assert_eq!(invalid(r#"{"a":NaN}"#), (5, "expected a value"));
        assert_eq!(invalid(r#"{"a":tru}"#), (5, "expected a value"));
        assert_eq!(invalid(r#"{"a":"x"#), (7, "unterminated string"));
        assert_eq!(
            invalid("{\"a\":\"x\ny\"}"),
            (7, "control character in a string (must be escaped)")
        );
        assert_eq!(invalid(r#"{"a":"\x"}"#), (6, "invalid escape sequence"));
        assert_eq!(
            invalid(r#"{"a":"\u12"}"#),
            (6, "\\u must be followed by four hex digits")
        );
        assert_eq!(
            invalid(r#"{"a":"\ud83d"}"#),
            (6, "unpaired surrogate in a \\u escape")
        );
        assert_eq!(
            invalid(r#"{"a":"\ude00"}"#),
            (6, "unpaired surrogate in a \\u escape")
        );
        assert_eq!(
            invalid(r#"{"a":"\ud83d\u0041"}"#),
            (6, "unpaired surrogate in a \\u escape")
        );
        assert_eq!(
            invalid(r#"{} {}"#),
            (3, "unexpected data after the JSON object")
        );
        assert_eq!(
            invalid(r#"{}x"#),
            (2, "unexpected data after the JSON object")
        );
        assert_eq!(
            invalid(r#"{"a":1}}"#),
            (7, "unexpected data after the JSON object")
        );
    }

    #[test]
    fn rejects_invalid_utf8_with_its_offset() {
        assert_eq!(
            validate_object(b"{\"a\":\"\xff\"}"),
            Err(Error::InvalidJson {
                offset: 6,
                reason: "invalid UTF-8"
            })
        );
        // Overlong encodings and encoded surrogates are invalid UTF-8 too.
        assert!(validate_object(b"{\"a\":\"\xc0\xaf\"}").is_err());
        assert!(validate_object(b"{\"a\":\"\xed\xa0\x80\"}").is_err());
    }

    #[test]
    fn depth_limit_is_exact() {
        let ok = format!(
            "{}{}",
            "{\"a\":".repeat(MAX_DEPTH - 1) + "{",
            "}".repeat(MAX_DEPTH)
        );
        assert_eq!(validate_object(ok.as_bytes()), Ok(()));
        let arrays = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(validate_object(arrays.as_bytes()), Ok(()));
        let deep = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(validate_object(deep.as_bytes()), Err(Error::TooDeep));
    }

    #[test]
    fn hostile_nesting_is_too_deep_not_a_stack_overflow() {
        let body = format!("{{\"a\":{}", "[".repeat(10_000));
        assert_eq!(validate_object(body.as_bytes()), Err(Error::TooDeep));
        let body = "{\"a\":".repeat(10_000);
        assert_eq!(validate_object(body.as_bytes()), Err(Error::TooDeep));
    }

    #[test]
    fn duplicate_keys_are_found_after_decoding_and_at_any_depth() {
        assert_eq!(
            validate_object(br#"{"a":1,"a":null}"#),
            Err(Error::DuplicateKey("a".into()))
        );
        assert_eq!(
            validate_object(br#"{"ab":1,"a\u0062":2}"#),
            Err(Error::DuplicateKey("ab".into()))
        );
        assert_eq!(
            validate_object(br#"{"x":[{"k":1},{"k":2,"k":3}]}"#),
            Err(Error::DuplicateKey("k".into()))
        );
        // The same key in different objects is fine.
        assert_eq!(
            validate_object(br#"{"k":1,"o":{"k":2},"a":[{"k":3}]}"#),
            Ok(())
        );
    }

    #[test]
    fn nodes_are_preorder_with_sibling_links() {
        let doc = parse(br#"{"a":[1,{"b":2}],"c":"x"}"#).expect("valid");
        let kinds: Vec<Kind> = doc.nodes.iter().map(|n| n.kind).collect();
        use Kind::*;
        assert_eq!(kinds, [Object, Array, Number, Object, Number, String]);
        assert_eq!(doc.children(0).collect::<Vec<_>>(), [1, 5]);
        assert_eq!(doc.children(1).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(doc.children(3).collect::<Vec<_>>(), [4]);
        assert_eq!(doc.bytes(doc.nodes[5].key), b"c");
        assert_eq!(doc.bytes(doc.nodes[5].value), b"x");
    }

    #[test]
    fn plain_run_stops_at_the_first_special_byte() {
        let naive = |b: &[u8]| {
            b.iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(b.len())
        };
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"abc".to_vec(),
            "héllo wörld 😀 0123456789".into(),
        ];
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..20 {
                for len in at + 1..at + 12 {
                    let mut v: Vec<u8> = (0..len)
                        .map(|i| [b'a', 0x7f, 0x80, 0xff, b' ', 0x21, 0x5b, 0x5d][i % 8])
                        .collect();
                    v[at] = special;
                    cases.push(v.clone());
                    v.push(special);
                    cases.push(v);
                }
            }
        }
        for case in cases {
            assert_eq!(plain_run(&case), naive(&case), "{case:?}");
        }
    }

    #[test]
    fn prefix_order_is_byte_order() {
        let keys: [&[u8]; 12] = [
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"a\0\0\0\0\0\0\0\0",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"abcdefgi",
            b"b",
            b"\xff",
        ];
        for x in keys {
            for y in keys {
                let fast = prefix(x).cmp(&prefix(y)).then_with(|| x.cmp(y));
                assert_eq!(fast, x.cmp(y), "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn decoding() {
        let mut out = Vec::new();
        decode_into(
            br#"a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00z"#,
            &mut out,
        );
        assert_eq!(out, "a\"b\\c/d\u{8}\u{c}\n\r\tAé€😀z".as_bytes());
        // Malformed input (never produced after validation) is copied, not a panic.
        let mut out = Vec::new();
        decode_into(br#"\q\u12\ud800"#, &mut out);
        assert_eq!(out, br#"\q\u12\ud800"#);
    }
}
