//! Prometheus series selectors, the `match=` parameter: `cpu{host="a", region!="eu",
//! dc=~"fra.*", canary!~"y.*"}`.
//!
//! The grammar is Prometheus's, a little wider where our names and keys are:
//!
//! ```text
//! selector := name? '{' (matcher (',' matcher)* ','?)? '}'  |  name
//! matcher  := key op string  |  string          (a lone string inside the braces is the name)
//! op       := '=' | '!=' | '=~' | '!~'
//! key      := bare | string                      (quoted keys may hold any character)
//! name     := bare | string
//! bare     := one or more characters other than space, quotes, '{', '}', ',', '=', '!', '~'
//! string   := "..." | '...' (escapes \\ \" \' \n \r \t \uXXXX)  |  `raw`
//! ```
//!
//! `__name__="cpu"` is the name as a matcher (only `=` is supported for it). Regular expressions
//! are anchored at both ends. A matcher `k=""` selects metrics without `k`, as in Prometheus.
//! Errors say at which character (counted from 1) the selector goes wrong and what was expected.

use super::{AnchoredRegex, MatchOp, TagMatcher};

/// A parsed selector: an optional metric name and its tag matchers (all must hold).
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// The metric name, before the braces or as `__name__="..."` / a lone string inside them.
    pub name: Option<String>,
    /// Every one of these must hold.
    pub matchers: Vec<TagMatcher>,
}

/// Why a selector does not parse: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {position}: {problem}")]
pub struct SelectorError {
    /// The character (counted from 1) where the problem was found.
    pub position: usize,
    /// What is wrong and what was expected.
    pub problem: String,
}

/// Parses a selector (see the [module docs](self)).
pub fn parse(input: &str) -> Result<Selector, SelectorError> {
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
    };
    let selector = p.selector()?;
    p.skip_space();
    if p.pos < p.chars.len() {
        return Err(p.fail("unexpected text after the selector's closing `}`"));
    }
    Ok(selector)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn fail(&self, problem: impl Into<String>) -> SelectorError {
        SelectorError {
            position: self.pos + 1,
            problem: problem.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn selector(&mut self) -> Result<Selector, SelectorError> {
        self.skip_space();
        let mut selector = Selector::default();
        if self.peek().is_none() {
            return Err(self.fail("the selector is empty; expected a name or `{...}`"));
        }
        if self.peek() != Some('{') {
            selector.name = Some(self.word("a metric name or `{`")?);
            self.skip_space();
            if self.peek().is_none() {
                return Ok(selector);
            }
        }
        if !self.eat('{') {
            return Err(self.fail("expected `{` after the metric name"));
        }
        loop {
            self.skip_space();
            if self.eat('}') {
                return Ok(selector);
            }
            self.matcher(&mut selector)?;
            self.skip_space();
            if self.eat('}') {
                return Ok(selector);
            }
            if !self.eat(',') {
                return Err(match self.peek() {
                    None => self.fail("the selector ends before its closing `}`"),
                    Some(_) => self.fail("expected `,` or `}` after a matcher"),
                });
            }
        }
    }

    fn matcher(&mut self, selector: &mut Selector) -> Result<(), SelectorError> {
        let start = self.pos;
        let quoted = matches!(self.peek(), Some('"' | '\'' | '`'));
        let key = self.word("a tag key")?;
        self.skip_space();
        let op_at = self.pos;
        let op = match (self.peek(), self.chars.get(self.pos + 1).copied()) {
            (Some('='), Some('~')) => "=~",
            (Some('='), _) => "=",
            (Some('!'), Some('=')) => "!=",
            (Some('!'), Some('~')) => "!~",
            (Some(',' | '}'), _) if quoted => {
                // A lone string inside the braces is the metric name (Prometheus 3).
                return self.set_name(selector, key, start);
            }
            _ => {
                return Err(self.fail(format!(
                    "expected `=`, `!=`, `=~` or `!~` after the key {key:?}"
                )))
            }
        };
        self.pos += op.len();
        self.skip_space();
        if !matches!(self.peek(), Some('"' | '\'' | '`')) {
            return Err(self.fail(format!(
                "expected a quoted value after `{key}{op}` (e.g. {key}{op}\"web-1\")"
            )));
        }
        let value_at = self.pos;
        let value = self.string()?;
        if key == "__name__" {
            if op != "=" {
                self.pos = op_at;
                return Err(self.fail(
                    "only `__name__=\"...\"` is supported for the metric name; use `name=` for \
                     several names",
                ));
            }
            return self.set_name(selector, value, start);
        }
        let regex = |parser: &mut Parser, source: &str| {
            AnchoredRegex::new(source).map_err(|err| {
                parser.pos = value_at;
                parser.fail(format!("invalid regular expression {source:?}: {err}"))
            })
        };
        let op = match op {
            "=" => MatchOp::Equal(vec![value]),
            "!=" => MatchOp::NotEqual(value),
            "=~" => MatchOp::Regex(regex(self, &value)?),
            _ => MatchOp::NotRegex(regex(self, &value)?),
        };
        selector.matchers.push(TagMatcher { key, op });
        Ok(())
    }

    fn set_name(
        &mut self,
        selector: &mut Selector,
        name: String,
        at: usize,
    ) -> Result<(), SelectorError> {
        match &selector.name {
            Some(existing) if *existing != name => {
                self.pos = at;
                Err(self.fail(format!(
                    "the selector names two metrics, {existing:?} and {name:?}"
                )))
            }
            _ => {
                selector.name = Some(name);
                Ok(())
            }
        }
    }

    /// A bare word or a quoted string.
    fn word(&mut self, what: &str) -> Result<String, SelectorError> {
        if matches!(self.peek(), Some('"' | '\'' | '`')) {
            let s = self.string()?;
            if s.is_empty() {
                return Err(self.fail(format!("{what} must not be empty")));
            }
            return Ok(s);
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| {
            !c.is_whitespace() && !matches!(c, '"' | '\'' | '`' | '{' | '}' | ',' | '=' | '!' | '~')
        }) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.fail(format!("expected {what}")));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// A quoted string: `"..."` or `'...'` with escapes, or a raw `` `...` ``.
    fn string(&mut self) -> Result<String, SelectorError> {
        let open_at = self.pos;
        let quote = self.chars[self.pos];
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                self.pos = open_at;
                return Err(self.fail(format!("the string opened here has no closing {quote}")));
            };
            self.pos += 1;
            if c == quote {
                return Ok(out);
            }
            if c != '\\' || quote == '`' {
                out.push(c);
                continue;
            }
            let escape_at = self.pos - 1;
            let e = self.peek();
            self.pos += 1;
            let decoded = match e {
                Some('\\') => '\\',
                Some('"') => '"',
                Some('\'') => '\'',
                Some('n') => '\n',
                Some('r') => '\r',
                Some('t') => '\t',
                Some('u') => {
                    let hex: String = self.chars.iter().skip(self.pos).take(4).collect();
                    let code = (hex.len() == 4)
                        .then(|| u32::from_str_radix(&hex, 16).ok())
                        .flatten()
                        .and_then(char::from_u32);
                    match code {
                        Some(c) => {
                            self.pos += 4;
                            c
                        }
                        None => {
                            self.pos = escape_at;
                            return Err(self.fail("`\\u` must be followed by four hex digits"));
                        }
                    }
                }
                _ => {
                    self.pos = escape_at;
                    return Err(
                        self.fail("unknown escape; use \\\\, \\\", \\', \\n, \\r, \\t or \\uXXXX")
                    );
                }
            };
            out.push(decoded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::Tags;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn matches(selector: &str, pairs: &[(&str, &str)]) -> bool {
        let s = parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
        s.matchers.iter().all(|m| m.matches(&tags(pairs)))
    }

    #[test]
    fn parses_every_operator() {
        let s = parse(r#"cpu{host="web-1", region!="eu",dc=~"fra.*", canary!~'y.*',}"#).unwrap();
        assert_eq!(s.name.as_deref(), Some("cpu"));
        assert_eq!(s.matchers.len(), 4);
        let web = [("host", "web-1"), ("dc", "fra1"), ("region", "us")];
        assert!(matches(
            r#"{host="web-1", region!="eu",dc=~"fra.*", canary!~"y.*"}"#,
            &web
        ));
        assert!(!matches(r#"{region!="us"}"#, &web));
        assert!(!matches(r#"{dc=~"fra"}"#, &web), "regexes are anchored");
        assert!(matches(r#"{dc!~"ams.*"}"#, &web));
        assert!(!matches(r#"{dc!~"f.*"}"#, &web));
    }

    #[test]
    fn empty_value_means_absent() {
        assert!(matches(r#"{canary=""}"#, &[("host", "a")]));
        assert!(!matches(r#"{canary=""}"#, &[("canary", "yes")]));
        assert!(matches(r#"{canary!=""}"#, &[("canary", "yes")]));
    }

    #[test]
    fn names_in_every_form() {
        for (text, name) in [
            ("cpu", Some("cpu")),
            ("  cpu.load  ", Some("cpu.load")),
            ("cpu.load{}", Some("cpu.load")),
            ("{}", None),
            (r#"{__name__="mem"}"#, Some("mem")),
            (r#"{"disk io", host="a"}"#, Some("disk io")),
            (r#""disk io"{host="a"}"#, Some("disk io")),
            (r#"mem{__name__="mem"}"#, Some("mem")),
        ] {
            assert_eq!(parse(text).unwrap().name.as_deref(), name, "{text}");
        }
    }

    #[test]
    fn quoted_keys_and_escapes() {
        let s = parse(r#"{"my key"="a\"b\\c\u00e9\n", `raw\key`='x'}"#).unwrap();
        assert_eq!(s.matchers[0].key, "my key");
        assert!(matches!(&s.matchers[0].op, MatchOp::Equal(v) if v == &["a\"b\\c\u{e9}\n"]));
        assert_eq!(s.matchers[1].key, "raw\\key");
        let raw = parse(r#"{re=~`\d+`}"#).unwrap();
        assert!(raw.matchers[0].op.matches("42"));
    }

    #[test]
    fn errors_say_where_and_what() {
        for (text, position, needle) in [
            ("", 1, "empty"),
            ("{host}", 6, "expected `=`"),
            ("{host=web}", 7, "quoted value"),
            (r#"{host="a" region="b"}"#, 11, "`,` or `}`"),
            (r#"{host="a""#, 10, "closing `}`"),
            (r#"{host="a}"#, 7, "no closing \""),
            (r#"{host=~"("}"#, 8, "regular expression"),
            (r#"{host="\q"}"#, 8, "unknown escape"),
            (r#"{host="\u12"}"#, 8, "four hex digits"),
            (r#"cpu{}x"#, 6, "after the selector"),
            (r#"cpu{__name__="mem"}"#, 5, "two metrics"),
            (r#"{__name__=~"c.*"}"#, 10, "__name__"),
            (r#"{=""}"#, 2, "tag key"),
            ("cpu host", 5, "expected `{`"),
        ] {
            let err = parse(text).expect_err(text);
            assert_eq!(err.position, position, "{text}: {err}");
            assert!(err.problem.contains(needle), "{text}: {err}");
        }
    }
}
