//! Compact JSON output of a [`Value`], byte for byte what
//! `serde_json::to_vec` writes, but faster on long strings.
//!
//! Request bodies are rewritten and written out again on every call, and a
//! coding agent's body is mostly long strings (file contents, tool output).
//! serde_json looks up every byte of a string in its escape table; here the
//! string is scanned eight bytes at a time for the three things JSON must
//! escape (control bytes, `"` and `\`), and the runs between them are copied
//! whole. Escapes are the ones serde_json (and the official client's
//! `JSON.stringify`) writes: `\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`, and
//! `\u00xx` with lower-case hex for the other control bytes. Numbers go
//! through serde_json itself, so their text cannot differ. Output goes to a
//! `Vec`, so writing cannot fail.

use serde_json::Value;

/// `value` as compact JSON. `capacity` is a guess of the output's length
/// (the input's length, for a body that was parsed and rewritten), so a
/// large body is written without growing the buffer step by step.
pub fn to_vec(value: &Value, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (key, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    // Writing a number into a Vec has no way to fail; serde_json's own
    // formatting keeps integers and floats exactly as `to_vec` has them.
    if serde_json::to_writer(&mut *out, n).is_err() {
        out.extend_from_slice(b"null");
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that must be escaped. Bytes after
/// the first flagged one may be flagged wrongly (a borrow carries), so only
/// the lowest flag is to be trusted. Bytes of 0x80 and above (UTF-8
/// sequences) are never flagged.
fn escapes_in(word: u64) -> u64 {
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGHS
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The index of the first byte at or after `from` that must be escaped.
fn next_escape(bytes: &[u8], mut from: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(from..from + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let flags = escapes_in(u64::from_le_bytes(word));
        if flags != 0 {
            return Some(from + (flags.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    bytes
        .get(from..)?
        .iter()
        .position(|&b| needs_escape(b))
        .map(|i| from + i)
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(at) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..at]);
        let byte = bytes[at];
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0f)],
            ]),
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same_as_serde(value: &Value) {
        let ours = to_vec(value, 0);
        let theirs = serde_json::to_vec(value).unwrap_or_default();
        assert!(
            ours == theirs,
            "ours {}\ntheirs {}",
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }

    #[test]
    fn every_byte_value_is_escaped_as_serde_json_does() {
        // Each ASCII byte alone, and at every offset of a word, so the
        // eight-byte scan and the tail scan both meet it.
        for byte in 0u8..0x80 {
            let c = char::from(byte);
            for pad in 0..17 {
                let text = format!("{}{c}{}", "a".repeat(pad), "b".repeat(pad % 5));
                same_as_serde(&Value::String(text));
            }
        }
    }

    #[test]
    fn escapes_after_a_flag_are_all_found() {
        // Runs of neighbours that need escaping, where a borrow in the word
        // scan could mark later bytes wrongly.
        let text: String = ['\u{0}', '"', '\\', '\u{1f}', ' ', '!', '\u{1}', '#', '\n']
            .iter()
            .cycle()
            .take(200)
            .collect();
        same_as_serde(&Value::String(text));
        let mixed: String = [0x20u8, 0x1f, 0x22, 0x5c, 0x21, 0x5b, 0x5d, 0x7f]
            .iter()
            .cycle()
            .take(300)
            .map(|&b| char::from(b))
            .collect();
        same_as_serde(&Value::String(mixed));
    }

    #[test]
    fn multi_byte_characters_pass_unescaped() {
        same_as_serde(&json!(
            "héllo wörld — 你好，世界 🙂\u{2028}\u{7f}\u{80}\u{ffff}"
        ));
        same_as_serde(&json!("🙂🙂🙂🙂\"🙂🙂\n🙂🙂\u{1}"));
    }

    #[test]
    fn whole_documents_match_serde_json() {
        same_as_serde(&json!({
            "model": "glm-5",
            "stream": true,
            "temperature": 0.7,
            "top_p": 1.0,
            "max_tokens": 32000,
            "seed": -42,
            "big": 18446744073709551615u64,
            "tiny": 1e-300,
            "huge": 1.7976931348623157e308,
            "messages": [
                {"role": "system", "content": "You are \"helpful\".\n\tBe brief."},
                {"role": "user", "content": [{"type": "text", "text": "hi\\there"}]},
                {"role": "assistant", "content": null, "tool_calls": []}
            ],
            "nested": {"a": {"b": {"c": [[], {}, [null, false, true]]}}},
            "key \"with\" escapes\n": "",
            "": {}
        }));
        same_as_serde(&json!([]));
        same_as_serde(&json!({}));
        same_as_serde(&json!(null));
        same_as_serde(&json!(-0.0));
    }

    #[test]
    fn parsed_bodies_keep_field_order_and_number_text() {
        let raw = r#"{"z":1,"a":2.50,"m":[1e3,-0,12345678901234567890],"k":"\u00e9\ud83d\ude00"}"#;
        let value: Value = serde_json::from_str(raw).unwrap_or_default();
        same_as_serde(&value);
        assert!(to_vec(&value, 0).starts_with(br#"{"z":1,"a":2.5,"#));
    }
}
