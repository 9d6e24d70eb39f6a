//! Decoding untrusted images within limits, shared by the media service (profile photos) and
//! client-core (thumbnails of image attachments).
//!
//! The bytes may be anything: the format is sniffed from the content (JPEG, PNG or WebP only,
//! never a file name or a claimed type), the dimensions are read from the header and checked
//! before a single pixel is decoded, the decoder runs under [`image::Limits`] (so a
//! decompression bomb is refused rather than allocated), and a truncated JPEG is refused (the
//! decoder would fill the missing part with grey). Callers re-encode from pixels with
//! [`encode_jpeg`], so no metadata of the original survives.

#![forbid(unsafe_code)]

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

/// The most pixels accepted on either side.
pub const MAX_SIDE: u32 = 8192;
/// The most pixels accepted in all.
pub const MAX_PIXELS: u64 = 40_000_000;
/// The most the decoder may allocate, the decoded image included.
pub const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;

/// Why bytes did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a JPEG, PNG or WebP image, whatever the file was called.
    #[error("not a JPEG, PNG or WebP image")]
    UnsupportedFormat,
    /// A JPEG, PNG or WebP using a feature the decoder does not implement; the decoder's words.
    #[error("unsupported encoding: {0}")]
    UnsupportedEncoding(String),
    /// The header declares more than [`MAX_SIDE`] on a side or [`MAX_PIXELS`] in all.
    #[error("{width}×{height} pixels")]
    TooManyPixels { width: u32, height: u32 },
    /// Decoding would allocate more than [`MAX_DECODE_ALLOC`].
    #[error("too much memory")]
    TooMuchMemory,
    /// Damaged or cut short; the decoder's (or the structure check's) words.
    #[error("undecodable: {0}")]
    Undecodable(String),
}

/// The format the bytes are in, if it is one of the three accepted.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => Some(format),
        _ => None,
    }
}

/// Decodes the bytes into pixels, oriented as their EXIF says, within every limit above.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, DecodeError> {
    let format = sniff(bytes).ok_or(DecodeError::UnsupportedFormat)?;
    if format == ImageFormat::Jpeg {
        check_jpeg_structure(bytes)?;
    }

    // Building the decoder reads only the header. The side limits are set after it is built:
    // the PNG decoder applies limits given up front in its constructor, which would refuse an
    // over-wide image without saying how wide, and the refusal should name the size.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(decode_error)?;

    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DecodeError::Undecodable(format!(
            "the header declares {width}×{height} pixels"
        )));
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(DecodeError::TooManyPixels { width, height });
    }
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    decoder.set_limits(limits.clone()).map_err(decode_error)?;
    // The output buffer counts against the allowance too, as `ImageReader::decode` does it.
    limits
        .reserve(decoder.total_bytes())
        .map_err(|_| DecodeError::TooMuchMemory)?;

    // A damaged EXIF block should not cost the user their picture: it is shown unrotated.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Walks a JPEG's segments and scans from SOI to EOI, refusing one that stops short.
///
/// The JPEG decoder is lenient: given half a file it fills the missing half with grey and
/// reports success. Bytes after EOI are ignored, as every viewer ignores them.
pub fn check_jpeg_structure(jpeg: &[u8]) -> Result<(), DecodeError> {
    let truncated = || DecodeError::Undecodable("the JPEG ends before its EOI marker".into());
    let damaged = |at: usize| DecodeError::Undecodable(format!("no JPEG marker at byte {at}"));
    let mut at = 2; // after SOI, which sniffing saw
    loop {
        if *jpeg.get(at).ok_or_else(truncated)? != 0xFF {
            return Err(damaged(at));
        }
        // Any number of 0xFF fill bytes may come before a marker.
        while jpeg.get(at) == Some(&0xFF) {
            at += 1;
        }
        let marker = *jpeg.get(at).ok_or_else(truncated)?;
        at += 1;
        match marker {
            0xD9 => return Ok(()),                      // EOI
            0x01 | 0xD0..=0xD7 => continue,             // TEM and RSTn stand alone
            0x00 | 0xD8 => return Err(damaged(at - 2)), // a stuffed byte or a second SOI
            _ => {}
        }
        let length = match jpeg.get(at..at + 2) {
            Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
            _ => return Err(truncated()),
        };
        if length < 2 {
            return Err(damaged(at));
        }
        at += length;
        if at > jpeg.len() {
            return Err(truncated());
        }
        if marker == 0xDA {
            // SOS: entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or
            // an RSTn.
            loop {
                let next_ff = jpeg[at..]
                    .iter()
                    .position(|&b| b == 0xFF)
                    .ok_or_else(truncated)?;
                at += next_ff;
                match jpeg.get(at + 1) {
                    None => return Err(truncated()),
                    Some(0x00 | 0xD0..=0xD7) => at += 2,
                    Some(0xFF) => at += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

/// Sorts the decoder's errors.
fn decode_error(error: ImageError) -> DecodeError {
    match error {
        ImageError::Limits(_) => DecodeError::TooMuchMemory,
        ImageError::Unsupported(e) => DecodeError::UnsupportedEncoding(e.to_string()),
        // Decoding errors, and the I/O error a reader over a slice gives only when it runs out.
        other => DecodeError::Undecodable(other.to_string()),
    }
}

/// 8-bit RGB with any transparency composited onto white (JPEG has no alpha, and black, what
/// dropping alpha would leave, looks broken on a transparent logo).
pub fn flatten_on_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (out, pixel) in rgb.pixels_mut().zip(rgba.pixels()) {
        let [r, g, b, a] = pixel.0;
        let over_white = |c: u8| {
            let (c, a) = (u16::from(c), u16::from(a));
            // At most (255 · 255 + 127) / 255 = 255, so the cast keeps every value.
            ((c * a + 255 * (255 - a) + 127) / 255) as u8
        };
        out.0 = [over_white(r), over_white(g), over_white(b)];
    }
    rgb
}

/// A baseline JPEG of `image` at `quality`, carrying nothing but the JFIF header and the pixels.
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality).encode_image(image)?;
    Ok(out)
}
