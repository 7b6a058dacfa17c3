//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1): what a registry's 401 asks for.
//!
//! Robust rather than strict: several challenges per header, quoted values with commas
//! and escapes, odd spacing; garbage yields fewer challenges, never a panic or a hang.
//! Not for: answering them (see `auth` and the transport).

/// One challenge of a `WWW-Authenticate` header: a scheme (lower-cased) and its parameters
/// (names lower-cased, values unquoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge in some `WWW-Authenticate` values (RFC 9110 §11.6.1): a header
/// may hold several challenges, and quoted values may hold commas and escaped quotes.
pub(super) fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in values {
        let mut p = Parser {
            s: value.as_bytes(),
            i: 0,
        };
        loop {
            p.skip(|b| b == b',' || b.is_ascii_whitespace());
            let scheme = p.token();
            if scheme.is_empty() {
                break;
            }
            let mut ch = Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params: Vec::new(),
            };
            loop {
                p.skip(|b| b == b',' || b.is_ascii_whitespace());
                let save = p.i;
                let name = p.token();
                p.skip(|b| b.is_ascii_whitespace());
                if name.is_empty() || !p.eat(b'=') {
                    p.i = save; // the next challenge's scheme (or the end)
                    break;
                }
                p.skip(|b| b.is_ascii_whitespace());
                let value = p.value();
                ch.params.push((name.to_ascii_lowercase(), value));
            }
            out.push(ch);
            if p.i >= p.s.len() {
                break;
            }
            if p.token_len() == 0 {
                p.i += 1; // a stray byte we cannot read: step over it rather than loop
            }
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.i < self.s.len() && f(self.s[self.i]) {
            self.i += 1;
        }
    }
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.s.get(self.i) == Some(&b);
        self.i += usize::from(hit);
        hit
    }
    fn token_len(&self) -> usize {
        self.s[self.i..]
            .iter()
            .take_while(|&&b| !(b.is_ascii_whitespace() || b == b',' || b == b'=' || b == b'"'))
            .count()
    }
    fn token(&mut self) -> String {
        let n = self.token_len();
        let t = String::from_utf8_lossy(&self.s[self.i..self.i + n]).into_owned();
        self.i += n;
        t
    }
    fn value(&mut self) -> String {
        if !self.eat(b'"') {
            return self.token();
        }
        let mut v = Vec::new();
        while let Some(&b) = self.s.get(self.i) {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' if self.i < self.s.len() => {
                    v.push(self.s[self.i]);
                    self.i += 1;
                }
                _ => v.push(b),
            }
        }
        String::from_utf8_lossy(&v).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Vec<Challenge> {
        parse_challenges([v])
    }

    #[test]
    fn bearer_challenge_with_quoted_commas() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/ubuntu:pull,push")
        );
    }

    #[test]
    fn several_challenges_spaces_escapes_and_tokens() {
        let c = one(
            r#"Basic realm="Registry \"x\", y" , BEARER  Realm = https://a/t , error=insufficient_scope"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"Registry "x", y"#));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("https://a/t"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        let two = parse_challenges(["Basic", r#"Bearer realm="r""#]);
        assert_eq!(two.len(), 2);
        assert!(two[0].params.is_empty());
    }

    #[test]
    fn garbage_does_not_hang_or_panic() {
        for v in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer ===",
            "Negotiate abc==",
            "a=b=c,\"x\"",
        ] {
            let _ = one(v);
        }
        assert_eq!(one("Negotiate abc==")[0].scheme, "negotiate");
    }
}
