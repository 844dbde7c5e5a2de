//! The `sorted` canonical form of a body (contract section 2a), without the time part.
//!
//! One parse ([`json::parse`]) gives spans into the body; one walk writes the pairs into a single
//! buffer sized for the worst case (the canonical form is never longer than the body). Keys are
//! sorted as borrowed slices; a string is decoded only when it contains a backslash.

use crate::Error;
use crate::json::{self, Doc, Kind, Member, Node};

/// The `sorted` canonical form of `body`: its pairs in key order, joined with `&`, **without**
/// the `&time=` part (see [`message`](crate::message) for the full signed message).
///
/// Rules (contract section 2a): keys ascend by their decoded UTF-8 bytes; `null` values are
/// skipped; strings are emitted verbatim after decoding JSON escapes (no re-escaping, no URL
/// encoding); numbers are their literal text from the body; booleans are `true`/`false`; a
/// nested object contributes its own sorted pairs in its key's position, with no prefix; an
/// array contributes its elements in order (objects flattened, scalars as the bare value, nulls
/// skipped, nested arrays likewise). An object with no non-null value contributes nothing.
///
/// Errors: the body must pass [`json::validate_object`].
///
/// ```
/// let body = br#"{"symbol":"USDT","amount":2000.00,"memo":null,"detail":{"b":true,"a":"x y"}}"#;
/// assert_eq!(blockhook_sig::canonical(body).unwrap(), b"amount=2000.00&a=x y&b=true&symbol=USDT");
/// ```
pub fn canonical(body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(body.len());
    canonical_into(body, &mut out)?;
    Ok(out)
}

/// Appends the canonical form of `body` to `out` (which may already hold data).
pub(crate) fn canonical_into(body: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let doc = json::parse(body)?;
    out.reserve(body.len());
    let mut writer = Writer {
        doc: &doc,
        out,
        members: Vec::with_capacity(16),
        first: true,
    };
    writer.object(0)
}

/// Walks a parsed body and writes its pairs.
struct Writer<'d, 'a> {
    doc: &'d Doc<'a>,
    out: &'d mut Vec<u8>,
    /// Sorted members of the objects being written, outermost first (a stack of segments).
    members: Vec<Member<'a>>,
    /// Nothing has been written yet, so the next piece needs no `&` before it.
    first: bool,
}

impl Writer<'_, '_> {
    fn separator(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.out.push(b'&');
        }
    }

    /// Writes a scalar's value: decoded string, number literal, `true` or `false`.
    fn scalar(&mut self, node: &Node) {
        let raw = self.doc.bytes(node.value);
        match node.kind {
            Kind::String if node.value.escaped => json::decode_into(raw, self.out),
            Kind::String | Kind::Number => self.out.extend_from_slice(raw),
            Kind::True => self.out.extend_from_slice(b"true"),
            Kind::False => self.out.extend_from_slice(b"false"),
            Kind::Null | Kind::Object | Kind::Array => {}
        }
    }

    /// Writes the pairs of object `index`. Recursion is bounded by [`json::MAX_DEPTH`], which
    /// the parser enforced.
    fn object(&mut self, index: usize) -> Result<(), Error> {
        let base = self.members.len();
        json::sorted_members(self.doc, index, &mut self.members)?;
        let end = self.members.len();
        for i in base..end {
            let Some(child) = self.members.get(i).map(|m| m.node) else {
                break;
            };
            let Some(&node) = self.doc.nodes.get(child) else {
                break;
            };
            match node.kind {
                Kind::Null => {}
                Kind::Object => self.object(child)?,
                Kind::Array => self.array(child)?,
                Kind::String | Kind::Number | Kind::True | Kind::False => {
                    self.separator();
                    if let Some(member) = self.members.get(i) {
                        self.out.extend_from_slice(&member.key);
                    }
                    self.out.push(b'=');
                    self.scalar(&node);
                }
            }
        }
        self.members.truncate(base);
        Ok(())
    }

    /// Writes the elements of array `index`: objects flattened, scalars bare, nulls skipped.
    fn array(&mut self, index: usize) -> Result<(), Error> {
        let doc = self.doc;
        for child in doc.children(index) {
            let Some(&node) = doc.nodes.get(child) else {
                break;
            };
            match node.kind {
                Kind::Null => {}
                Kind::Object => self.object(child)?,
                Kind::Array => self.array(child)?,
                Kind::String | Kind::Number | Kind::True | Kind::False => {
                    self.separator();
                    self.scalar(&node);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn c(body: &str) -> String {
        match canonical(body.as_bytes()) {
            Ok(bytes) => String::from_utf8(bytes).expect("canonical of valid UTF-8 is UTF-8"),
            Err(e) => panic!("{body}: {e}"),
        }
    }

    #[test]
    fn keys_sorted_and_joined() {
        assert_eq!(c(r#"{"b":"2","a":"1","c":"3"}"#), "a=1&b=2&c=3");
        assert_eq!(c(r#"{"B":1,"a":2,"_":3,"0":4}"#), "0=4&B=1&_=3&a=2"); // ASCII order
    }

    #[test]
    fn null_is_skipped() {
        assert_eq!(c(r#"{"a":null,"b":"x","c":null}"#), "b=x");
        assert_eq!(c(r#"{"a":null}"#), "");
    }

    #[test]
    fn empty_string_gives_key_equals() {
        assert_eq!(c(r#"{"a":"","b":"x"}"#), "a=&b=x");
        assert_eq!(c(r#"{"a":""}"#), "a=");
    }

    #[test]
    fn nested_object_flattened_in_parent_key_position() {
        assert_eq!(c(r#"{"z":1,"m":{"y":2,"b":3},"a":4}"#), "a=4&b=3&y=2&z=1");
        assert_eq!(c(r#"{"m":{"n":{"o":"deep"}}}"#), "o=deep");
    }

    #[test]
    fn empty_or_all_null_containers_contribute_nothing() {
        assert_eq!(c(r#"{"a":1,"b":{},"c":2}"#), "a=1&c=2");
        assert_eq!(c(r#"{"a":1,"b":[],"c":2}"#), "a=1&c=2");
        assert_eq!(c(r#"{"a":1,"b":{"x":null,"y":null},"c":2}"#), "a=1&c=2");
        assert_eq!(c(r#"{"a":1,"b":[null,{},[],[null]],"c":2}"#), "a=1&c=2");
        assert_eq!(c(r#"{"b":{}}"#), "");
        assert_eq!(c(r#"{"b":{},"c":1}"#), "c=1");
        assert_eq!(c(r#"{"a":1,"b":{}}"#), "a=1");
    }

    #[test]
    fn arrays_of_objects_are_flattened_in_order() {
        assert_eq!(
            c(r#"{"list":[{"o":"2","a":"1"},{"o":"4","a":"3"}],"x":"y"}"#),
            "a=1&o=2&a=3&o=4&x=y"
        );
    }

    #[test]
    fn array_scalars_are_bare_values_and_nulls_skipped() {
        assert_eq!(
            c(r#"{"a":[1,"two",true,false,null,-0.5]}"#),
            "1&two&true&false&-0.5"
        );
        assert_eq!(c(r#"{"k":"v","a":[1,[2,[3]],{"b":4}]}"#), "1&2&3&b=4&k=v");
        // An empty string element is an empty piece: pieces are joined with `&` all the same.
        assert_eq!(c(r#"{"a":["","x"]}"#), "&x");
    }

    #[test]
    fn booleans() {
        assert_eq!(c(r#"{"t":true,"f":false}"#), "f=false&t=true");
    }

    #[test]
    fn unicode_keys_sort_by_utf8_bytes() {
        // 'é' (C3 A9) > 'z' (7A); '😀' (F0 ..) > 'é'; 'Z' < 'a'. UTF-16 order would differ for
        // '😀' (D83D) vs 'ﬀ' (FB00), UTF-8 byte order puts 'ﬀ' (EF AC 80) first.
        assert_eq!(
            c(r#"{"😀":1,"é":2,"z":3,"Z":4,"ﬀ":5}"#),
            "Z=4&z=3&é=2&ﬀ=5&😀=1"
        );
    }

    #[test]
    fn escapes_are_decoded_never_reescaped() {
        assert_eq!(
            c(r#"{"s":"a\"b\\c\/d\te\u0041\u00e9\ud83d\ude00"}"#),
            "s=a\"b\\c/d\teAé😀"
        );
        // Keys too, and they sort by their decoded bytes: "\u0062" is "b", after "a".
        assert_eq!(c(r#"{"\u0062":1,"a":2}"#), "a=2&b=1");
        // Characters with meaning elsewhere are emitted verbatim: no URL encoding.
        assert_eq!(c(r#"{"q":"x=1&y=2 %20+"}"#), "q=x=1&y=2 %20+");
    }

    #[test]
    fn numbers_are_literal_text() {
        assert_eq!(
            c(
                r#"{"a":2000.00,"b":1E-7,"c":-0,"d":123456789012345678901234567890,"e":1.5e+300,"f":1.00000000}"#
            ),
            "a=2000.00&b=1E-7&c=-0&d=123456789012345678901234567890&e=1.5e+300&f=1.00000000"
        );
        // A quoted number is a string, also verbatim.
        assert_eq!(c(r#"{"amount":"2000.00"}"#), "amount=2000.00");
    }

    #[test]
    fn empty_object_is_empty() {
        assert_eq!(c("{}"), "");
        assert_eq!(c(" { } "), "");
    }

    #[test]
    fn whitespace_and_key_order_do_not_matter() {
        assert_eq!(
            c("{\n  \"b\" : 2 ,\r\n\t\"a\":[ 1 , { \"c\" : null } ]\n}"),
            c(r#"{"a":[1,{"c":null}],"b":2}"#)
        );
    }

    #[test]
    fn errors_propagate() {
        assert_eq!(canonical(b"[]"), Err(Error::NotAnObject));
        assert_eq!(
            canonical(br#"{"a":1,"a":2}"#),
            Err(Error::DuplicateKey("a".into()))
        );
        assert!(matches!(canonical(b"{"), Err(Error::InvalidJson { .. })));
        let deep = format!("{{\"a\":{}", "[".repeat(10_000));
        assert_eq!(canonical(deep.as_bytes()), Err(Error::TooDeep));
    }

    #[test]
    fn canonical_is_never_longer_than_the_body() {
        for body in [
            r#"{"a":1}"#,
            r#"{"list":[{"o":"2","a":"1"}],"x":""}"#,
            r#"{"s":"\u00e9\ud83d\ude00"}"#,
            r#"{"a":[1,2,3]}"#,
        ] {
            assert!(c(body).len() <= body.len(), "{body}");
        }
    }
}
