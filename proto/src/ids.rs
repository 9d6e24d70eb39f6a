//! Ids a client chooses and the server keys on (a message's `client_msg_id`, a status's
//! `client_status_id`): the rule both `.proto` files spell out, "1–64 characters of
//! `[A-Za-z0-9_-]`", so that such an id is safe in a database key, a log line or a header.

/// Longest client-chosen id, in characters (all ASCII, so also in bytes).
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// Whether `id` is 1–[`MAX_CLIENT_ID_LEN`] characters of `[A-Za-z0-9_-]`.
pub fn is_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_1_to_64_characters_of_the_alphabet() {
        let longest = "A-z_9".repeat(12) + "abcd";
        assert_eq!(longest.len(), MAX_CLIENT_ID_LEN);
        for id in ["a", "0", "_", "-", "m1", "0f3a-b_C", longest.as_str()] {
            assert!(is_client_id(id), "{id:?}");
        }
        let long = "x".repeat(MAX_CLIENT_ID_LEN + 1);
        for id in ["", "a b", "é", "a/b", "a.b", "a\n", long.as_str()] {
            assert!(!is_client_id(id), "{id:?}");
        }
    }
}
