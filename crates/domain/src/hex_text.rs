//! Lowercase hex, the spelling of every hash and signature in events, seals and the API.
//!
//! `hex::encode` builds its string one `char` at a time; on the command path (envelope hashes, a seal
//! entry per command) that showed up in the pipeline's profile. This goes through the `hex` crate's slice
//! function instead. Decoding (a seal entry's leaf reads every hash of its commit) looks each digit up in a
//! table: the `hex` crate's per-digit branches were mispredicted on random digits.

/// `bytes` in lowercase hex.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut out = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("twice as long");
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// The value of each ASCII hex digit (either case); 0xff for every other byte.
const VALUES: [u8; 256] = {
    let mut values = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        values[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        values[b'a' as usize + i] = 10 + i as u8;
        values[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    values
};

/// Decodes `text` into `out`; false if `text` is not exactly twice as long or holds a byte that is not a
/// hex digit (`out` is then partly written).
pub fn decode_to_slice(text: &str, out: &mut [u8]) -> bool {
    let text = text.as_bytes();
    if text.len() != out.len() * 2 {
        return false;
    }
    // No branch per digit: a bad one sets high bits in `bad`, checked once at the end.
    let mut bad = 0;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (VALUES[pair[0] as usize], VALUES[pair[1] as usize]);
        bad |= high | low;
        *byte = high << 4 | low;
    }
    bad & 0xf0 == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_like_the_hex_crate() {
        // Every pair of ASCII bytes, odd and empty lengths, a non-ASCII byte, a longer text.
        let mut cases: Vec<String> =
            (0..128u8).flat_map(|a| (0..128u8).map(move |b| format!("{}{}", a as char, b as char))).collect();
        cases.extend(["", "0", "abc", "é0", "00ff7Fc3aB", "00ff7Fc3aX"].map(String::from));
        for text in &cases {
            let mut ours = vec![0; text.len() / 2];
            let mut theirs = ours.clone();
            let expected = hex::decode_to_slice(text, &mut theirs).is_ok();
            assert_eq!(super::decode_to_slice(text, &mut ours), expected, "{text:?}");
            if expected {
                assert_eq!(ours, theirs, "{text:?}");
            }
        }
    }

    #[test]
    fn spells_like_the_hex_crate() {
        for bytes in [&[][..], &[0, 1, 0xab, 0xff], &[0x5a; 32]] {
            assert_eq!(super::encode(bytes), hex::encode(bytes));
        }
    }
}
