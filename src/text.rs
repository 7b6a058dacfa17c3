//! Untrusted values quoted in messages for people: a name from a layer, a value from a
//! registry. They can be megabytes long or not UTF-8 at all, and a message (a log line, a
//! job row, a problem `detail`) must stay small whatever they are: these helpers keep the
//! start, lossily decoded, and say how much was cut. Not for: values used as data.

/// How many bytes of an untrusted value a message quotes.
pub const QUOTE_MAX: usize = 256;

/// `raw` for a message: lossy UTF-8 of its first [`QUOTE_MAX`] bytes, and when longer,
/// `…(cut, N bytes)` with N its full length.
pub fn quote(raw: &[u8]) -> String {
    if raw.len() <= QUOTE_MAX {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let mut out = String::from_utf8_lossy(&raw[..QUOTE_MAX]).into_owned();
    // a character cut in two decodes as U+FFFD: drop it rather than show a false one
    if out.ends_with('\u{FFFD}') && std::str::from_utf8(&raw[..QUOTE_MAX]).is_err() {
        out.pop();
    }
    out.push_str(&cut_marker(raw.len()));
    out
}

/// `text` kept to at most `max` bytes (on a character boundary), with `…(cut, N bytes)`
/// appended when it was longer. For whole messages, as a backstop.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let full = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&cut_marker(full));
    text
}

fn cut_marker(full_len: usize) -> String {
    format!("…(cut, {full_len} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(quote(b"etc/passwd"), "etc/passwd");
        assert_eq!(quote(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(quote(&[b'x'; QUOTE_MAX]), "x".repeat(QUOTE_MAX));
    }

    #[test]
    fn long_values_are_cut_and_say_their_length() {
        let raw = vec![b'a'; 134_217_728];
        let q = quote(&raw);
        assert_eq!(
            q,
            format!("{}…(cut, 134217728 bytes)", "a".repeat(QUOTE_MAX))
        );
    }

    #[test]
    fn a_character_split_at_the_cut_is_dropped() {
        let mut raw = vec![b'a'; QUOTE_MAX - 1];
        raw.extend("é and more".as_bytes());
        let q = quote(&raw);
        assert!(q.starts_with(&"a".repeat(QUOTE_MAX - 1)), "{q}");
        assert!(!q.contains('\u{FFFD}'), "{q}");
        assert!(q.ends_with(&format!("…(cut, {} bytes)", raw.len())), "{q}");
    }

    #[test]
    fn truncate_keeps_character_boundaries() {
        assert_eq!(truncate("short".into(), 10), "short");
        assert_eq!(truncate("ééé".into(), 3), "é…(cut, 6 bytes)");
        assert_eq!(truncate("abcdef".into(), 4), "abcd…(cut, 6 bytes)");
    }
}
