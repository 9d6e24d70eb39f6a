//! Status ids: the posting time as 13 zero-padded decimal digits of Unix ms, then 16 random hex
//! digits. Ids sort by posting time (as text), which is what listings and paging go by.

/// The length of every status id.
pub const LEN: usize = 13 + 16;

/// The largest time an id can hold (13 digits of ms: the year 2286).
const MAX_MS: i64 = 9_999_999_999_999;

/// A fresh id for a status posted at `posted_ms`.
pub fn new(posted_ms: i64) -> String {
    format(posted_ms, rand::random::<u64>())
}

/// The id for `posted_ms` with `suffix` as its random part.
pub fn format(posted_ms: i64, suffix: u64) -> String {
    format!("{:013}{suffix:016x}", posted_ms.clamp(0, MAX_MS))
}

/// Whether `id` has the shape of a status id (any other string names no status).
pub fn is_well_formed(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == LEN
        && bytes[..13].iter().all(u8::is_ascii_digit)
        && bytes[13..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_posting_time() {
        let early = format(999, u64::MAX);
        let late = format(1_000, 0);
        assert!(early < late, "{early} < {late}");
        assert_eq!(late, "00000000010000000000000000000");
        let fresh = new(1_750_000_000_000);
        assert!(fresh.starts_with("1750000000000"), "{fresh}");
        assert!(is_well_formed(&fresh), "{fresh}");
        assert_ne!(new(1), new(1));
    }

    #[test]
    fn only_well_formed_ids_are_accepted() {
        assert!(is_well_formed(&format(0, 0xabcdef)));
        for bad in [
            "",
            "1750000000000",
            "1750000000000000000000000000A",
            "175000000000x0000000000000000",
            "17500000000000000000000000000000",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
