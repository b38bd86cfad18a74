//! How Prefect 1 types a configuration string (`prefect.configuration.string_to_type`): `true` /
//! `false` in any case become booleans, and anything Python's `ast.literal_eval` accepts becomes
//! that value; everything else stays the string it was.
//!
//! Only the literals that have a JSON form are taken: strings (`'…'`, `"…"`, triple-quoted, `r`
//! and `u` prefixes, adjacent literals joined), integers (decimal, `0x`, `0o`, `0b`, `_`
//! separators, one sign) and floats that fit in 64 bits, `True`, `False`, `None`, lists, tuples
//! and dicts of those. Bytes, sets and complex numbers (which have no JSON form) stay strings.

use serde_json::{Map, Number, Value};

/// Prefect 1's `string_to_type`: the typed value of `text`, or `text` as a string.
pub(crate) fn string_to_type(text: &str) -> Value {
    if text.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if text.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    literal_eval(text).unwrap_or_else(|| Value::String(text.to_string()))
}

/// Python's `ast.literal_eval` for the literals that have a JSON form; `None` for anything else.
pub(crate) fn literal_eval(text: &str) -> Option<Value> {
    let mut p = Parser {
        s: text.trim_start_matches([' ', '\t']).as_bytes(),
        i: 0,
    };
    let value = p.value()?;
    p.skip_ws();
    (p.i == p.s.len()).then_some(value)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips whitespace, `#` comments and backslash line continuations.
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.i += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                b'\\' if self.s.get(self.i + 1) == Some(&b'\n') => self.i += 2,
                _ => return,
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.skip_ws();
        match self.peek()? {
            b'[' => {
                self.i += 1;
                Some(Value::Array(self.items(b']')?))
            }
            b'(' => {
                self.i += 1;
                if self.eat(b')') {
                    return Some(Value::Array(Vec::new()));
                }
                let first = self.value()?;
                if self.eat(b')') {
                    return Some(first); // a parenthesized value, not a tuple
                }
                if !self.eat(b',') {
                    return None;
                }
                let mut items = vec![first];
                items.extend(self.items(b')')?);
                Some(Value::Array(items))
            }
            b'{' => {
                self.i += 1;
                self.dict()
            }
            b'\'' | b'"' => self.strings(),
            b'+' | b'-' | b'0'..=b'9' | b'.' => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.i += 1;
                }
                let word = &self.s[start..self.i];
                match word {
                    b"True" => Some(Value::Bool(true)),
                    b"False" => Some(Value::Bool(false)),
                    b"None" => Some(Value::Null),
                    b"r" | b"R" | b"u" | b"U" | b"Ur" | b"UR" | b"ur" | b"uR"
                        if matches!(self.peek(), Some(b'\'' | b'"')) =>
                    {
                        self.i = start;
                        self.strings()
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Comma-separated values up to `close` (a trailing comma allowed).
    fn items(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.value()?);
            if !self.eat(b',') {
                return self.eat(close).then_some(items);
            }
        }
    }

    fn dict(&mut self) -> Option<Value> {
        let mut map = Map::new();
        loop {
            if self.eat(b'}') {
                return Some(Value::Object(map));
            }
            let key = match self.value()? {
                Value::String(s) => s,
                Value::Bool(true) => "True".to_string(),
                Value::Bool(false) => "False".to_string(),
                Value::Null => "None".to_string(),
                Value::Number(n) => n.to_string(),
                _ => return None, // unhashable, or a tuple key with no JSON form
            };
            if !self.eat(b':') {
                return None; // a set, or not a literal
            }
            let value = self.value()?;
            map.insert(key, value);
            if !self.eat(b',') {
                return self.eat(b'}').then_some(Value::Object(map));
            }
        }
    }

    /// One or more adjacent string literals, joined.
    fn strings(&mut self) -> Option<Value> {
        let mut out = self.string()?;
        loop {
            let save = self.i;
            self.skip_ws();
            let prefixed = matches!(self.peek(), Some(b'r' | b'R' | b'u' | b'U'))
                && matches!(self.s.get(self.i + 1), Some(b'\'' | b'"'));
            if matches!(self.peek(), Some(b'\'' | b'"')) || prefixed {
                out.push_str(&self.string()?);
            } else {
                self.i = save;
                return Some(Value::String(out));
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let mut raw = false;
        while let Some(c) = self.peek() {
            match c {
                b'r' | b'R' => raw = true,
                b'u' | b'U' => {}
                _ => break,
            }
            self.i += 1;
        }
        let quote = self.peek()?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        let triple = self.s[self.i..].starts_with(&[quote; 3]);
        self.i += if triple { 3 } else { 1 };
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            if c == quote && (!triple || self.s[self.i..].starts_with(&[quote; 3])) {
                self.i += if triple { 3 } else { 1 };
                return String::from_utf8(out).ok();
            }
            if c == b'\n' && !triple {
                return None;
            }
            if c != b'\\' {
                out.push(c);
                self.i += 1;
                continue;
            }
            let e = *self.s.get(self.i + 1)?;
            self.i += 2;
            if raw {
                out.extend([b'\\', e]);
                continue;
            }
            let mut push = |ch: char| out.extend(ch.encode_utf8(&mut [0; 4]).as_bytes());
            match e {
                b'\n' => {}
                b'\\' | b'\'' | b'"' => push(e as char),
                b'a' => push('\x07'),
                b'b' => push('\x08'),
                b'f' => push('\x0c'),
                b'n' => push('\n'),
                b'r' => push('\r'),
                b't' => push('\t'),
                b'v' => push('\x0b'),
                b'0'..=b'7' => {
                    let mut n = u32::from(e - b'0');
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ b'0'..=b'7') => {
                                n = n * 8 + u32::from(d - b'0');
                                self.i += 1;
                            }
                            _ => break,
                        }
                    }
                    push(char::from_u32(n)?);
                }
                b'x' | b'u' | b'U' => {
                    let len = match e {
                        b'x' => 2,
                        b'u' => 4,
                        _ => 8,
                    };
                    let hex = std::str::from_utf8(self.s.get(self.i..self.i + len)?).ok()?;
                    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return None;
                    }
                    self.i += len;
                    push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
                }
                b'N' => return None, // named escapes: not worth a name table
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let negative = match self.peek()? {
            b'-' => {
                self.i += 1;
                true
            }
            b'+' => {
                self.i += 1;
                false
            }
            _ => false,
        };
        self.skip_ws();
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.'))
            || (matches!(self.peek(), Some(b'+' | b'-'))
                && matches!(self.s.get(self.i.wrapping_sub(1)), Some(b'e' | b'E'))
                && !self.s[start..self.i].starts_with(b"0x")
                && !self.s[start..self.i].starts_with(b"0X"))
        {
            self.i += 1;
        }
        let token = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        let sign = if negative { "-" } else { "" };
        if let Some(n) = parse_int(token) {
            let n = if negative { n.checked_neg()? } else { n };
            return Some(Value::Number(i64::try_from(n).ok()?.into()));
        }
        if !is_python_float(token) {
            return None;
        }
        let f: f64 = format!("{sign}{}", token.replace('_', "")).parse().ok()?;
        Number::from_f64(f).map(Value::Number)
    }
}

/// A Python integer literal (no sign), if it fits in an `i128`.
fn parse_int(token: &str) -> Option<i128> {
    let (radix, digits) = match token.get(..2) {
        Some("0x" | "0X") => (16, &token[2..]),
        Some("0o" | "0O") => (8, &token[2..]),
        Some("0b" | "0B") => (2, &token[2..]),
        _ => {
            // Decimal: no leading zeros, except for zero itself.
            let digits = token.replace('_', "");
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || (digits.starts_with('0') && digits.bytes().any(|b| b != b'0'))
            {
                return None;
            }
            (10, token)
        }
    };
    let digits = digits.strip_prefix('_').unwrap_or(digits);
    if !underscores_ok(digits) {
        return None;
    }
    i128::from_str_radix(&digits.replace('_', ""), radix).ok()
}

/// `_` only between two digits.
fn underscores_ok(digits: &str) -> bool {
    !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
}

/// A Python float literal: `1.5`, `.5`, `5.`, `1e3`, `1_000.5e-3` (no sign, no `j`).
fn is_python_float(token: &str) -> bool {
    let (mantissa, exponent) = match token.find(['e', 'E']) {
        Some(i) => (&token[..i], Some(&token[i + 1..])),
        None => (token, None),
    };
    let digits = |s: &str| {
        s.is_empty() || (underscores_ok(s) && s.bytes().all(|b| b.is_ascii_digit() || b == b'_'))
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (mantissa, None),
    };
    if int.is_empty() && frac.is_none_or(str::is_empty) {
        return false;
    }
    if !digits(int) || !frac.is_none_or(digits) {
        return false;
    }
    match exponent {
        None => frac.is_some(),
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_like_prefect_string_to_type() {
        // Each expectation is what Prefect 1.4.1's `string_to_type` returned for the input.
        for (input, expected) in [
            ("ghp_abc", json!("ghp_abc")),
            ("TRUE", json!(true)),
            ("False", json!(false)),
            ("None", json!(null)),
            ("123", json!(123)),
            ("007", json!("007")),
            ("-5", json!(-5)),
            ("0x10", json!(16)),
            ("1_000", json!(1000)),
            ("1e3", json!(1000.0)),
            (".5", json!(0.5)),
            ("'quoted'", json!("quoted")),
            ("\"dq\"", json!("dq")),
            ("'a' \"b\"", json!("ab")),
            ("r'\\n'", json!("\\n")),
            ("'\\n\\x41\\u00e9'", json!("\nAé")),
            (
                "{'ACCESS_KEY': 'a', 'SECRET_ACCESS_KEY': 'b'}",
                json!({"ACCESS_KEY": "a", "SECRET_ACCESS_KEY": "b"}),
            ),
            ("{\"a\": true}", json!("{\"a\": true}")),
            ("[1, (2, 3), {}]", json!([1, [2, 3], {}])),
            ("(1)", json!(1)),
            ("  42  # comment", json!(42)),
            ("{1, 2}", json!("{1, 2}")),
            ("b'x'", json!("b'x'")),
            ("1j", json!("1j")),
            ("1 2", json!("1 2")),
            ("pa$$word", json!("pa$$word")),
            ("", json!("")),
            ("--1", json!("--1")),
            ("1__0", json!("1__0")),
        ] {
            assert_eq!(string_to_type(input), expected, "{input:?}");
        }
    }
}
