//! JSON text re-spaced without being parsed: keys keep their order and literals their
//! spelling (`2000.00`, `1E-7`), so the output is the input's tokens with other whitespace.
//! The signature debugger signs these forms to recognise a re-serialised body; the CLI shows
//! payloads with them.

/// `text` (valid JSON) without whitespace outside strings; keys, order and literals unchanged.
pub fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut strings = Strings::default();
    for c in text.chars() {
        if strings.takes(c) || !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Tells, character by character, which characters belong to a string literal (its quotes
/// included): only those are copied verbatim by the re-spacers.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Whether `c`, the next character, is part of a string literal.
    fn takes(&mut self, c: char) -> bool {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.inside = false;
            }
            return true;
        }
        self.inside = c == '"';
        self.inside
    }
}

/// Compact JSON re-spaced: `None` puts a space after `,` and `:` (Python's `json.dumps`),
/// `Some(n)` pretty-prints with an `n`-space indent (`JSON.stringify(v, null, n)`).
pub fn respace(compact: &str, indent: Option<usize>) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut strings = Strings::default();
    let mut depth = 0usize;
    let chars: Vec<char> = compact.chars().collect();
    let newline = |out: &mut String, depth: usize, n: usize| {
        out.push('\n');
        out.push_str(&" ".repeat(depth * n));
    };
    for (i, &c) in chars.iter().enumerate() {
        if strings.takes(c) {
            out.push(c);
            continue;
        }
        match (c, indent) {
            (',', None) => out.push_str(", "),
            (':', _) => out.push_str(": "),
            ('{' | '[', Some(n)) => {
                out.push(c);
                depth += 1;
                let empty = matches!(chars.get(i + 1), Some('}' | ']'));
                if !empty {
                    newline(&mut out, depth, n);
                }
            }
            ('}' | ']', Some(n)) => {
                depth = depth.saturating_sub(1);
                let empty = i > 0 && matches!(chars.get(i - 1), Some('{' | '['));
                if !empty {
                    newline(&mut out, depth, n);
                }
                out.push(c);
            }
            (',', Some(n)) => {
                out.push(',');
                newline(&mut out, depth, n);
            }
            _ => out.push(c),
        }
    }
    out
}

/// `text` (valid JSON) pretty-printed with a 2-space indent, its tokens unchanged.
pub fn pretty(text: &str) -> String {
    respace(&compact(text), Some(2))
}
