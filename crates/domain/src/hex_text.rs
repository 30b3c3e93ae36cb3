//! Lowercase hex, the spelling of every hash and signature in events, seals and the API.
//!
//! `hex::encode` builds its string one `char` at a time; on the command path (envelope hashes, a seal
//! entry per command) that showed up in the pipeline's profile. This goes through the `hex` crate's slice
//! function instead.

/// `bytes` in lowercase hex.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut out = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("twice as long");
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn spells_like_the_hex_crate() {
        for bytes in [&[][..], &[0, 1, 0xab, 0xff], &[0x5a; 32]] {
            assert_eq!(super::encode(bytes), hex::encode(bytes));
        }
    }
}
