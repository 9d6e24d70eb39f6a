//! Blob keys: ids the service generated, never anything a client typed.

use super::BlobError;

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 128;

/// Accepts 1 to [`MAX_KEY_LEN`] characters of `[a-z0-9_-]` and refuses anything else.
///
/// The charset is what keeps keys safe as file names and S3 keys as they are: no `/`, `\`, `.`,
/// NUL or other control characters, and lower case only, so two keys never name one file on a
/// case-insensitive file system. Names starting with `.` (the folder's temporary files) can
/// therefore never be keys.
pub fn validate_key(key: &str) -> Result<&str, BlobError> {
    let ok = (1..=MAX_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(key)
    } else {
        Err(BlobError::InvalidKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_service_ids() {
        for key in [
            "a",
            "0123456789abcdef",
            "st_01-xyz",
            &"z".repeat(MAX_KEY_LEN),
        ] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        let too_long = "a".repeat(MAX_KEY_LEN + 1);
        for key in [
            "", ".", "..", "../x", "a/b", "a\\b", "/etc", "A", "a.b", "a b", "a\0", "é", "a\n",
            ".tmp-x", &too_long,
        ] {
            assert!(
                matches!(validate_key(key), Err(BlobError::InvalidKey)),
                "{key:?}"
            );
        }
    }
}
