//! aws-sam-translator's LogicalIdGenerator: SHA-1 of Python's `json.dumps(data, separators=(",", ":"),
//! sort_keys=True)` (ASCII only: anything else as `\uXXXX`), first 10 hex digits appended to a prefix.
//! SHA-1 is used as an id, not for security; it is written out here (RFC 3174) rather than adding a crate.

use serde_json::Value;

/// `prefix` + the first 10 hex digits of the SHA-1 of `data` serialized as samtranslator does; a
/// string is hashed as is, and an empty/null/false `data` hashes to nothing (the prefix alone).
pub(crate) fn logical_id(prefix: &str, data: &Value) -> String {
    let text = match data {
        Value::String(s) => s.clone(),
        Value::Null | Value::Bool(false) => String::new(),
        Value::Object(m) if m.is_empty() => String::new(),
        Value::Array(a) if a.is_empty() => String::new(),
        other => python_json(other),
    };
    if text.is_empty() {
        return prefix.to_string();
    }
    let digest = sha1(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}", &hex[..10])
}

/// Python's `json.dumps(v, separators=(",", ":"), sort_keys=True)` with the default `ensure_ascii`.
pub(crate) fn python_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // serde_json's Map is ordered by key (code point order, as Python's sort_keys).
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

fn write_number(n: &serde_json::Number, out: &mut String) {
    if n.is_f64() {
        let f = n.as_f64().unwrap_or(0.0);
        // Python's repr: integral floats keep ".0"; Rust's Display drops it.
        if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
            out.push_str(&format!("{f:.1}"));
        } else {
            out.push_str(&n.to_string());
        }
    } else {
        out.push_str(&n.to_string());
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// SHA-1 (RFC 3174).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(d: [u8; 20]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_test_vectors() {
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }

    #[test]
    fn python_json_matches_json_dumps() {
        // json.dumps({"b": [1, 2.0, 2.5, None, True], "a": "é\n\"x\u007f", "c": {}},
        //            separators=(",", ":"), sort_keys=True)
        let v = json!({"b": [1, 2.0, 2.5, null, true], "a": "é\n\"x\u{7f}", "c": {}});
        assert_eq!(
            python_json(&v),
            r#"{"a":"\u00e9\n\"x\u007f","b":[1,2.0,2.5,null,true],"c":{}}"#
        );
        assert_eq!(python_json(&json!("😀")), r#""\ud83d\ude00""#);
    }

    #[test]
    fn logical_id_like_samtranslator() {
        // LogicalIdGenerator("FnVersion", {"S3Bucket": "b", "S3Key": "k"}).gen()
        // = "FnVersion" + sha1('{"S3Bucket":"b","S3Key":"k"}')[:10]
        let id = logical_id("FnVersion", &json!({"S3Bucket": "b", "S3Key": "k"}));
        let expected = hex(sha1(br#"{"S3Bucket":"b","S3Key":"k"}"#));
        assert_eq!(id, format!("FnVersion{}", &expected[..10]));
        assert_eq!(logical_id("P", &json!({})), "P");
    }
}
