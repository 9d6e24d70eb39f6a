//! Hand-made PNG fixtures: chunks with their CRC, and the header of a decompression bomb (a PNG
//! that declares more pixels than any decoder should allocate, with no pixel data behind it);
//! with feature `image`, real pictures encoded in any format ([`pattern`], [`encode`]).

/// The eight bytes every PNG starts with.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// The side of [`png_bomb`]: 50,000×50,000 pixels, 7.5 GB of RGB when decoded.
pub const BOMB_SIDE: u32 = 50_000;

/// CRC-32 (IEEE, reflected), as PNG chunks use it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Appends a PNG chunk to `out`: the length of `data`, `kind`, `data`, and the CRC of kind and
/// data.
pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).expect("small").to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A PNG whose IHDR declares `width`×`height` 8-bit RGB, with a token IDAT (an empty zlib
/// stream): the shape of a decompression bomb, minus the payload. Its header is valid, so a
/// decoder refuses it for its size or, within its limits, for the missing pixels.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = PNG_SIGNATURE.to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, adaptive, no interlace
    png_chunk(&mut png, b"IHDR", &ihdr);
    // An empty zlib stream (a final stored block of length 0) and its Adler-32.
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

/// A decompression bomb: [`png_header_only`] of [`BOMB_SIDE`]×[`BOMB_SIDE`], under 100 bytes.
pub fn png_bomb() -> Vec<u8> {
    png_header_only(BOMB_SIDE, BOMB_SIDE)
}

/// A `width`×`height` picture with some structure (gradients and a XOR pattern), so encoders
/// and scalers have real work to do.
#[cfg(feature = "image")]
pub fn pattern(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width) as u8,
            (y * 255 / height) as u8,
            ((x ^ y) & 0xff) as u8,
        ])
    })
}

/// `picture` encoded as `format`.
#[cfg(feature = "image")]
pub fn encode(picture: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encoding a test image");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn iend_chunk_has_its_well_known_crc() {
        let mut out = Vec::new();
        png_chunk(&mut out, b"IEND", &[]);
        assert_eq!(
            out,
            [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]
        );
    }

    #[test]
    fn the_bomb_is_small_and_declares_its_size() {
        let bomb = png_bomb();
        assert!(bomb.len() < 100);
        assert_eq!(bomb[..8], PNG_SIGNATURE);
        assert_eq!(&bomb[12..16], b"IHDR");
        assert_eq!(bomb[16..20], BOMB_SIDE.to_be_bytes());
        assert_eq!(bomb[20..24], BOMB_SIDE.to_be_bytes());
        assert!(bomb.ends_with(&[b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
    }
}
