//! Phone numbers: strict E.164 parsing and masking for logs.

use crate::error::{Error, Result};

/// The longest E.164 number: `+` and 15 digits.
const MAX_LEN: usize = 16;

/// A valid phone number in normalised E.164 form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// The number in E.164 form, e.g. `+12015550123`.
    pub e164: String,
    /// The country calling code, e.g. `1` or `44`.
    pub country_code: u16,
}

/// Parses a phone number given in E.164 form (`+` then digits, nothing else, at most 16
/// characters) and requires it to be a valid number per libphonenumber's metadata.
///
/// Anything else is [`Error::InvalidPhone`].
pub fn parse_phone(input: &str) -> Result<Phone> {
    let digits = input.strip_prefix('+').ok_or(Error::InvalidPhone)?;
    if input.len() > MAX_LEN || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidPhone);
    }
    let number = phonenumber::parse(None, input).map_err(|_| Error::InvalidPhone)?;
    if !number.is_valid() {
        return Err(Error::InvalidPhone);
    }
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    Ok(Phone {
        e164,
        country_code: number.code().value(),
    })
}

/// Masks an E.164 number for logs: keeps `+`, the first two digits and the last two, e.g.
/// `+12015550123` becomes `+12*******23`. Short or odd input is masked entirely.
pub fn mask_phone(e164: &str) -> String {
    let chars: Vec<char> = e164.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < 3 || i >= chars.len() - 2 {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_e164_numbers() {
        let us = parse_phone("+12015550123").expect("valid US number");
        assert_eq!(
            us,
            Phone {
                e164: "+12015550123".into(),
                country_code: 1
            }
        );
        let uk = parse_phone("+447400123456").expect("valid UK number");
        assert_eq!(
            uk,
            Phone {
                e164: "+447400123456".into(),
                country_code: 44
            }
        );
    }

    #[test]
    fn refuses_everything_else() {
        for input in [
            "5551234567",
            "+1 555 123 4567",
            "+1-201-555-0123",
            "+1555",
            "+99912345678",
            "+15551234567",
            "+447700900123",
            "",
            "+",
            "++12015550123",
            "+12015550123 ",
            "+1201555012345678",
            "+１２０１５５５０１２３",
            "tel:+12015550123",
        ] {
            assert!(
                matches!(parse_phone(input), Err(Error::InvalidPhone)),
                "{input:?} accepted"
            );
        }
    }

    #[test]
    fn masks_all_but_the_edges() {
        assert_eq!(mask_phone("+15551234567"), "+15*******67");
        assert_eq!(mask_phone("+447400123456"), "+44********56");
        assert_eq!(mask_phone("+1555"), "*****");
    }
}
