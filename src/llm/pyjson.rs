//! Python-compatible renderings of JSON values: `json.dumps` (default separators, ASCII escapes),
//! used where the reference's texts or wire strings came out of Python, and `repr` of the
//! equivalent Python object (used in validation error texts).

use serde_json::Value;

/// `json.dumps(value)` with Python's defaults: `", "` / `": "` separators, non-ASCII escaped.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_dumps(value, &mut out);
    out
}

fn write_dumps(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&python_number(n)),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_dumps(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_string(k, out);
                out.push_str(": ");
                write_dumps(v, out);
            }
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's rendering of a number that came from JSON (`1.0` stays `1.0`).
fn python_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) => python_float(f),
        None => n.to_string(),
    }
}

/// Python's `repr(float)`.
pub fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if f == f.trunc() {
        return format!("{f:.1}");
    }
    format!("{f}")
}

/// `repr()` of the Python object a JSON value decodes to (`{'a': 1, 'b': None}`).
pub fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(b) => (if *b { "True" } else { "False" }).into(),
        Value::Number(n) => python_number(n),
        Value::String(s) => repr_str(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => {
            format!(
                "{{{}}}",
                map.iter()
                    .map(|(k, v)| format!("{}: {}", repr_str(k), repr(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// `repr(str)`: single quotes unless the text has a single quote and no double quote.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's type name for a JSON value (`input_type=dict`).
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Why Python's `json.loads` rejects `text`, in its words
/// (`Expecting ',' delimiter: line 1 column 5 (char 4)`), or `None` if Python would accept it.
pub fn json_error(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser { s: &chars, i: 0 };
    let result = p.ws().and_then(|_| p.value()).and_then(|_| {
        p.ws()?;
        if p.i < chars.len() {
            Err(("Extra data", p.i))
        } else {
            Ok(())
        }
    });
    match result {
        Ok(()) => None,
        Err((msg, pos)) => {
            let before: String = chars[..pos.min(chars.len())].iter().collect();
            let line = before.matches('\n').count() + 1;
            let col = match before.rfind('\n') {
                Some(nl) => before[nl + 1..].chars().count() + 1,
                None => pos + 1,
            };
            Some(format!("{msg}: line {line} column {col} (char {pos})"))
        }
    }
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
}

type PResult = Result<(), (&'static str, usize)>;

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) -> PResult {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.i += 1;
        }
        Ok(())
    }

    fn value(&mut self) -> PResult {
        match self.peek() {
            Some('{') => self.object(),
            Some('[') => self.array(),
            Some('"') => self.string(),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            _ => {
                for lit in ["null", "true", "false", "NaN", "Infinity", "-Infinity"] {
                    let l: Vec<char> = lit.chars().collect();
                    if self.s[self.i..].starts_with(&l) {
                        self.i += l.len();
                        return Ok(());
                    }
                }
                Err(("Expecting value", self.i))
            }
        }
    }

    fn number(&mut self) -> PResult {
        let start = self.i;
        if self.peek() == Some('-') {
            self.i += 1;
            if self.s[self.i..].starts_with(&['I', 'n', 'f']) {
                self.i += 8;
                return Ok(());
            }
        }
        match self.peek() {
            Some('0') => self.i += 1,
            Some(c) if c.is_ascii_digit() => {
                while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            _ => return Err(("Expecting value", start)),
        }
        if self.peek() == Some('.')
            && matches!(self.s.get(self.i + 1), Some(c) if c.is_ascii_digit())
        {
            self.i += 1;
            while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.i += 1;
            }
            if matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                    self.i += 1;
                }
            } else {
                self.i = save;
            }
        }
        Ok(())
    }

    fn string(&mut self) -> PResult {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek() {
                None => return Err(("Unterminated string starting at", start)),
                Some('"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some('\\') => {
                    let esc_pos = self.i;
                    self.i += 1;
                    match self.peek() {
                        Some('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't') => self.i += 1,
                        Some('u') => {
                            let hex = self.s.get(self.i + 1..self.i + 5);
                            if hex.is_some_and(|h| h.iter().all(char::is_ascii_hexdigit)) {
                                self.i += 5;
                            } else {
                                return Err(("Invalid \\uXXXX escape", esc_pos + 1));
                            }
                        }
                        None => return Err(("Unterminated string starting at", start)),
                        Some(_) => return Err(("Invalid \\escape", esc_pos)),
                    }
                }
                Some(c) if (c as u32) < 0x20 => {
                    return Err(("Invalid control character at", self.i));
                }
                Some(_) => self.i += 1,
            }
        }
    }

    fn object(&mut self) -> PResult {
        self.i += 1;
        self.ws()?;
        if self.peek() == Some('}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some('"') {
                return Err(("Expecting property name enclosed in double quotes", self.i));
            }
            self.string()?;
            self.ws()?;
            if self.peek() != Some(':') {
                return Err(("Expecting ':' delimiter", self.i));
            }
            self.i += 1;
            self.ws()?;
            self.value()?;
            self.ws()?;
            match self.peek() {
                Some(',') => {
                    self.i += 1;
                    self.ws()?;
                }
                Some('}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(("Expecting ',' delimiter", self.i)),
            }
        }
    }

    fn array(&mut self) -> PResult {
        self.i += 1;
        self.ws()?;
        if self.peek() == Some(']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws()?;
            self.value()?;
            self.ws()?;
            match self.peek() {
                Some(',') => self.i += 1,
                Some(']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(("Expecting ',' delimiter", self.i)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dumps_matches_python() {
        assert_eq!(
            dumps(&json!({"command": "echo hi", "security_risk": "LOW"})),
            r#"{"command": "echo hi", "security_risk": "LOW"}"#
        );
        assert_eq!(
            dumps(&json!({"a": [1, 2.5, null, true], "é": "\n"})),
            r#"{"a": [1, 2.5, null, true], "\u00e9": "\n"}"#
        );
        assert_eq!(dumps(&json!({"x": 1.0})), r#"{"x": 1.0}"#);
        assert_eq!(dumps(&json!("😀")), r#""\ud83d\ude00""#);
        assert_eq!(python_float(1e20), "1e+20");
        assert_eq!(python_float(1.5e-7), "1.5e-07");
        assert_eq!(python_float(123456789.123), "123456789.123");
        assert_eq!(python_float(2.0), "2.0");
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(
            repr(&json!({"a": 1, "b": null, "c": "it's", "d": [true]})),
            r#"{'a': 1, 'b': None, 'c': "it's", 'd': [True]}"#
        );
        assert_eq!(repr(&json!({})), "{}");
        assert_eq!(type_name(&json!(-1)), "int");
        assert_eq!(type_name(&json!(1.5)), "float");
    }

    #[test]
    fn json_errors_match_python() {
        assert_eq!(
            json_error(r#"{"command": "echo hi", "#).as_deref(),
            Some("Expecting property name enclosed in double quotes: line 1 column 24 (char 23)")
        );
        assert_eq!(
            json_error("{bad json").as_deref(),
            Some("Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")
        );
        assert_eq!(
            json_error("{not json").as_deref(),
            Some("Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")
        );
        assert_eq!(
            json_error("").as_deref(),
            Some("Expecting value: line 1 column 1 (char 0)")
        );
        assert_eq!(
            json_error(r#"{"a" 1}"#).as_deref(),
            Some("Expecting ':' delimiter: line 1 column 6 (char 5)")
        );
        assert_eq!(
            json_error(r#"{"a": 1 "b": 2}"#).as_deref(),
            Some("Expecting ',' delimiter: line 1 column 9 (char 8)")
        );
        assert_eq!(
            json_error(r#"{"a": "x"#).as_deref(),
            Some("Unterminated string starting at: line 1 column 7 (char 6)")
        );
        assert_eq!(
            json_error("{} x").as_deref(),
            Some("Extra data: line 1 column 4 (char 3)")
        );
        assert_eq!(
            json_error("{\n\"a\": }").as_deref(),
            Some("Expecting value: line 2 column 6 (char 7)")
        );
        assert_eq!(json_error(r#"{"a": [1, 2], "b": {"c": null}}"#), None);
    }
}
