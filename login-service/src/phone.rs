//! Phone numbers in requests: strict E.164, as otp-service accepts them.

/// The longest E.164 number: `+` and 15 digits.
const MAX_LEN: usize = 16;

/// The normalised E.164 form of `input` when it is `+` and digits only (at most 16 characters)
/// and a valid number per libphonenumber's metadata; `None` otherwise.
pub(crate) fn normalise_e164(input: &str) -> Option<String> {
    let digits = input.strip_prefix('+')?;
    if input.len() > MAX_LEN || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = phonenumber::parse(None, input).ok()?;
    number
        .is_valid()
        .then(|| number.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_e164_only() {
        assert_eq!(
            normalise_e164("+12015550123").as_deref(),
            Some("+12015550123")
        );
        assert_eq!(
            normalise_e164("+447400123456").as_deref(),
            Some("+447400123456")
        );
        for junk in [
            "",
            "+",
            "12015550123",
            "+1 201 555 0123",
            "+1-201-555-0123",
            "+1201555012a",
            "+12345678901234567",
            "+10000000000",
            "+999",
            "tel:+12015550123",
        ] {
            assert_eq!(normalise_e164(junk), None, "{junk:?}");
        }
    }
}
