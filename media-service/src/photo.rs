//! Profile photos: whatever JPEG, PNG or WebP a user uploads is re-made from its pixels as two
//! square baseline JPEGs ([`LARGE_SIDE`] and [`SMALL_SIDE`] pixels), so nothing but the picture
//! survives: no EXIF (and so no GPS position or camera serial), no ICC profile, no XMP, no
//! comments.
//!
//! The upload is untrusted. Its format is sniffed from its first bytes, never taken from a file
//! name or a claimed content type; its dimensions are read from the header and checked before a
//! single pixel is decoded; and the decoder runs under [`image::Limits`], so a decompression bomb
//! is refused rather than allocated.
//!
//! Decoding is CPU-bound (tens of milliseconds for a phone photo in release builds): async
//! callers run [`process_profile_photo`] on a blocking thread.

use image::imageops::FilterType;
use image::{DynamicImage, ImageError, RgbImage};
use juntos_imaging::DecodeError;
pub use juntos_imaging::{MAX_DECODE_ALLOC, MAX_PIXELS, MAX_SIDE};

/// The largest upload accepted, in bytes.
pub const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;

/// The side of the large square, in pixels (profile screens).
pub const LARGE_SIDE: u32 = 640;

/// The side of the small square, in pixels (chat lists, notifications).
pub const SMALL_SIDE: u32 = 96;

/// The JPEG quality of both outputs (1 to 100).
pub const JPEG_QUALITY: u8 = 85;

/// A processed profile photo: two square baseline JPEGs made from the upload's pixels alone.
#[derive(Clone, PartialEq, Eq)]
pub struct ProfilePhoto {
    /// [`LARGE_SIDE`] × [`LARGE_SIDE`] pixels.
    pub large: Vec<u8>,
    /// [`SMALL_SIDE`] × [`SMALL_SIDE`] pixels.
    pub small: Vec<u8>,
}

impl std::fmt::Debug for ProfilePhoto {
    /// Sizes only: the bytes are a user's photo.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfilePhoto")
            .field("large_bytes", &self.large.len())
            .field("small_bytes", &self.small.len())
            .finish()
    }
}

/// Why an upload cannot become a profile photo. The messages are written for the person who
/// chose the file.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    /// The upload has no bytes at all.
    #[error("the file is empty")]
    Empty,
    /// The upload is over [`MAX_PHOTO_BYTES`].
    #[error("the file is {size} bytes; at most {max} bytes (10 MiB) are accepted")]
    TooLarge {
        /// The upload's size in bytes.
        size: usize,
        /// [`MAX_PHOTO_BYTES`].
        max: usize,
    },
    /// The bytes are not a JPEG, PNG or WebP image, whatever the file was called.
    #[error("not a JPEG, PNG or WebP image")]
    UnsupportedFormat,
    /// A JPEG, PNG or WebP using a feature the decoder does not implement (12-bit JPEG, say).
    /// The string is the decoder's own description, for logs.
    #[error("this kind of JPEG, PNG or WebP image is not supported")]
    UnsupportedEncoding(String),
    /// The header declares more than [`MAX_SIDE`] pixels on a side or more than
    /// [`MAX_PIXELS`] in all; nothing was decoded.
    #[error(
        "the image is {width}×{height} pixels; at most 8192 on a side and 40 megapixels in all"
    )]
    TooManyPixels {
        /// The width the header declares.
        width: u32,
        /// The height the header declares.
        height: u32,
    },
    /// Decoding would allocate more than [`MAX_DECODE_ALLOC`] (a deep colour format at a size
    /// that is otherwise allowed, or a decoder's own limit).
    #[error("the image needs too much memory to process; try a smaller one")]
    TooMuchMemory,
    /// The bytes start like a JPEG, PNG or WebP but are damaged or cut short. The string is the
    /// decoder's own description, for logs.
    #[error("the image is damaged or truncated")]
    Undecodable(String),
    /// Re-encoding the pixels failed; a bug rather than a bad upload.
    #[error("the photo could not be re-encoded")]
    Encode(#[source] ImageError),
}

/// Turns an upload into a [`ProfilePhoto`]: decodes it within the limits above, applies its EXIF
/// orientation, crops the largest central square, flattens any transparency onto white, and
/// re-encodes that square as [`LARGE_SIDE`] and [`SMALL_SIDE`] baseline JPEGs at
/// [`JPEG_QUALITY`]. Small images are scaled up.
pub fn process_profile_photo(input: &[u8]) -> Result<ProfilePhoto, PhotoError> {
    let image = decode(input)?;
    let square = centre_square(&image);
    drop(image);
    let large = image::imageops::resize(&square, LARGE_SIDE, LARGE_SIDE, FilterType::Lanczos3);
    // From the large square rather than the original: the same picture at a fraction of the cost.
    let small = image::imageops::resize(&large, SMALL_SIDE, SMALL_SIDE, FilterType::Lanczos3);
    Ok(ProfilePhoto {
        large: encode_jpeg(&large)?,
        small: encode_jpeg(&small)?,
    })
}

/// Decodes the upload into pixels, oriented as its EXIF says, within every limit above.
fn decode(input: &[u8]) -> Result<DynamicImage, PhotoError> {
    if input.is_empty() {
        return Err(PhotoError::Empty);
    }
    if input.len() > MAX_PHOTO_BYTES {
        return Err(PhotoError::TooLarge {
            size: input.len(),
            max: MAX_PHOTO_BYTES,
        });
    }
    juntos_imaging::decode(input).map_err(photo_error)
}

/// What a decoding failure tells the user.
fn photo_error(e: DecodeError) -> PhotoError {
    match e {
        DecodeError::UnsupportedFormat => PhotoError::UnsupportedFormat,
        DecodeError::UnsupportedEncoding(why) => PhotoError::UnsupportedEncoding(why),
        DecodeError::TooManyPixels { width, height } => PhotoError::TooManyPixels { width, height },
        DecodeError::TooMuchMemory => PhotoError::TooMuchMemory,
        DecodeError::Undecodable(why) => PhotoError::Undecodable(why),
    }
}

/// The largest central square of `image`, as 8-bit RGB on white.
fn centre_square(image: &DynamicImage) -> RgbImage {
    let side = image.width().min(image.height());
    let x = (image.width() - side) / 2;
    let y = (image.height() - side) / 2;
    juntos_imaging::flatten_on_white(image.crop_imm(x, y, side, side))
}

/// A baseline JPEG of `image` at [`JPEG_QUALITY`], carrying nothing but the JFIF header and the
/// pixels.
fn encode_jpeg(image: &RgbImage) -> Result<Vec<u8>, PhotoError> {
    juntos_imaging::encode_jpeg(image, JPEG_QUALITY).map_err(PhotoError::Encode)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use image::{Rgb, Rgba, RgbaImage};

    use image::ImageFormat;

    use juntos_testkit::images::png_header_only;

    use super::*;

    fn check_jpeg_structure(jpeg: &[u8]) -> Result<(), PhotoError> {
        juntos_imaging::check_jpeg_structure(jpeg).map_err(photo_error)
    }

    use juntos_testkit::images::{encode, pattern};

    /// The marker types of a JPEG's segments from SOI up to its first SOS.
    fn header_markers(jpeg: &[u8]) -> Vec<u8> {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "starts with SOI");
        let mut markers = Vec::new();
        let mut at = 2;
        loop {
            assert_eq!(jpeg[at], 0xFF, "a marker at {at}");
            let marker = jpeg[at + 1];
            markers.push(marker);
            if marker == 0xDA {
                return markers;
            }
            let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
            at += 2 + len;
        }
    }

    /// Asserts `jpeg` is a baseline JPEG of `side`×`side` with no metadata segments, and returns
    /// its pixels.
    fn assert_clean_square_jpeg(jpeg: &[u8], side: u32) -> RgbImage {
        assert_eq!(image::guess_format(jpeg).ok(), Some(ImageFormat::Jpeg));
        let markers = header_markers(jpeg);
        assert!(markers.contains(&0xC0), "baseline SOF0 in {markers:02X?}");
        for marker in markers {
            assert!(
                matches!(marker, 0xE0 | 0xDB | 0xC0 | 0xC4 | 0xDA),
                "only JFIF, tables, frame and scan, not {marker:02X}"
            );
        }
        assert!(jpeg.ends_with(&[0xFF, 0xD9]), "ends with EOI");
        let decoded = image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg)
            .expect("the output decodes")
            .into_rgb8();
        assert_eq!(decoded.dimensions(), (side, side));
        decoded
    }

    fn assert_colour(image: &RgbImage, x: u32, y: u32, want: [u8; 3]) {
        let got = image.get_pixel(x, y).0;
        let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 24);
        assert!(close, "pixel ({x}, {y}) is {got:?}, want about {want:?}");
    }

    /// `jpeg` with an APP1 Exif segment inserted right after SOI: a little-endian TIFF header,
    /// one IFD holding the orientation tag when given, and a GPS-looking string after it.
    fn with_exif(jpeg: &[u8], orientation: Option<u16>) -> Vec<u8> {
        let mut tiff = b"II*\0".to_vec();
        tiff.extend_from_slice(&8u32.to_le_bytes()); // the first IFD follows the header
        match orientation {
            Some(value) => {
                tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
                tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
                tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
                tiff.extend_from_slice(&1u32.to_le_bytes()); // count
                tiff.extend_from_slice(&value.to_le_bytes());
                tiff.extend_from_slice(&[0, 0]); // padding of the 4-byte value field
            }
            None => tiff.extend_from_slice(&0u16.to_le_bytes()),
        }
        tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        tiff.extend_from_slice(b"GPS-SECRET-47.61N 122.33W serial CAM-0042");

        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let len = u16::try_from(app1.len() + 2).expect("small segment");
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn jpeg_png_and_webp_become_two_square_jpegs() {
        let image = DynamicImage::ImageRgb8(pattern(320, 200));
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let photo = process_profile_photo(&encode(&image, format))
                .unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_clean_square_jpeg(&photo.large, LARGE_SIDE);
            assert_clean_square_jpeg(&photo.small, SMALL_SIDE);
        }
    }

    #[test]
    fn small_images_are_scaled_up() {
        let image = DynamicImage::ImageRgb8(pattern(20, 30));
        let photo = process_profile_photo(&encode(&image, ImageFormat::Png)).expect("processed");
        assert_clean_square_jpeg(&photo.large, LARGE_SIDE);
        assert_clean_square_jpeg(&photo.small, SMALL_SIDE);
    }

    #[test]
    fn exif_and_gps_do_not_survive() {
        let jpeg = encode(
            &DynamicImage::ImageRgb8(pattern(200, 200)),
            ImageFormat::Jpeg,
        );
        let input = with_exif(&jpeg, None);
        assert!(contains(&input, b"Exif\0\0") && contains(&input, b"GPS-SECRET-47.61N"));
        image::load_from_memory(&input).expect("the test input is itself a valid JPEG");

        let photo = process_profile_photo(&input).expect("processed");
        for out in [&photo.large, &photo.small] {
            assert!(!contains(out, b"Exif"));
            assert!(!contains(out, b"GPS-SECRET"));
            assert!(!contains(out, b"CAM-0042"));
        }
        assert_clean_square_jpeg(&photo.large, LARGE_SIDE);
    }

    #[test]
    fn exif_orientation_is_applied() {
        // 100 wide, 200 tall: red on top, blue below. The central square is red over blue.
        let upright = RgbImage::from_fn(100, 200, |_, y| {
            if y < 100 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let jpeg = encode(&DynamicImage::ImageRgb8(upright), ImageFormat::Jpeg);

        let plain = process_profile_photo(&jpeg).expect("processed");
        let plain = assert_clean_square_jpeg(&plain.large, LARGE_SIDE);
        assert_colour(&plain, 320, 40, [255, 0, 0]);
        assert_colour(&plain, 320, 600, [0, 0, 255]);

        // Orientation 6: shown rotated 90° clockwise, so the red top ends up on the right.
        let rotated = process_profile_photo(&with_exif(&jpeg, Some(6))).expect("processed");
        let rotated = assert_clean_square_jpeg(&rotated.large, LARGE_SIDE);
        assert_colour(&rotated, 600, 320, [255, 0, 0]);
        assert_colour(&rotated, 40, 320, [0, 0, 255]);
    }

    #[test]
    fn centre_crop_keeps_the_middle() {
        let wide = RgbImage::from_fn(300, 100, |x, _| {
            if (100..200).contains(&x) {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let tall = RgbImage::from_fn(100, 300, |_, y| {
            if (100..200).contains(&y) {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        for image in [wide, tall] {
            let png = encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png);
            let photo = process_profile_photo(&png).expect("processed");
            let large = assert_clean_square_jpeg(&photo.large, LARGE_SIDE);
            for (x, y) in [(0, 0), (639, 0), (0, 639), (639, 639), (320, 320), (5, 320)] {
                assert_colour(&large, x, y, [255, 0, 0]);
            }
            let small = assert_clean_square_jpeg(&photo.small, SMALL_SIDE);
            for (x, y) in [(0, 0), (95, 95), (48, 48)] {
                assert_colour(&small, x, y, [255, 0, 0]);
            }
        }
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let clear = RgbaImage::from_pixel(50, 50, Rgba([0, 0, 0, 0]));
        for format in [ImageFormat::Png, ImageFormat::WebP] {
            let input = encode(&DynamicImage::ImageRgba8(clear.clone()), format);
            let photo = process_profile_photo(&input).expect("processed");
            let large = assert_clean_square_jpeg(&photo.large, LARGE_SIDE);
            assert_colour(&large, 320, 320, [255, 255, 255]);
        }
    }

    #[test]
    fn png_bomb_is_refused_from_its_header() {
        let bomb = png_header_only(50_000, 50_000);
        assert!(bomb.len() < 100);
        let started = Instant::now();
        let error = process_profile_photo(&bomb).expect_err("refused");
        // 7.5 GB of pixels were never allocated: the refusal takes no time at all.
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            matches!(
                error,
                PhotoError::TooManyPixels {
                    width: 50_000,
                    height: 50_000
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the image is 50000×50000 pixels; at most 8192 on a side and 40 megapixels in all"
        );
    }

    #[test]
    fn side_and_pixel_limits_apply_separately() {
        for (width, height) in [(8193, 10), (10, 8193), (8000, 6000)] {
            let error =
                process_profile_photo(&png_header_only(width, height)).expect_err("refused");
            assert!(
                matches!(error, PhotoError::TooManyPixels { width: w, height: h } if (w, h) == (width, height)),
                "{width}×{height}: {error:?}"
            );
        }
        // Within both limits, the header passes and the missing pixel data is what fails.
        let error = process_profile_photo(&png_header_only(8192, 4096)).expect_err("no pixels");
        assert!(matches!(error, PhotoError::Undecodable(_)), "{error:?}");
    }

    #[test]
    fn truncated_images_are_undecodable() {
        let image = DynamicImage::ImageRgb8(pattern(256, 256));
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let whole = encode(&image, format);
            let half = &whole[..whole.len() / 2];
            let error = process_profile_photo(half).expect_err("refused");
            assert!(
                matches!(error, PhotoError::Undecodable(_)),
                "{format:?}: {error:?}"
            );
            assert_eq!(error.to_string(), "the image is damaged or truncated");
        }
    }

    #[test]
    fn jpeg_structure_check_needs_everything_up_to_eoi() {
        let whole = encode(&DynamicImage::ImageRgb8(pattern(24, 24)), ImageFormat::Jpeg);
        check_jpeg_structure(&whole).expect("a whole JPEG");
        let mut trailing = whole.clone();
        trailing.extend_from_slice(b"trailing bytes some cameras append");
        check_jpeg_structure(&trailing).expect("bytes after EOI are ignored");
        let exif = with_exif(&whole, Some(1));
        check_jpeg_structure(&exif).expect("an APP1 segment is skipped by its length");
        for cut in 3..whole.len() {
            assert!(
                matches!(
                    check_jpeg_structure(&whole[..cut]),
                    Err(PhotoError::Undecodable(_))
                ),
                "cut at {cut} of {}",
                whole.len()
            );
        }
    }

    #[test]
    fn gif_is_unsupported() {
        // The classic 1×1 transparent GIF89a, 43 bytes.
        let gif: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00\
            !\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
        assert_eq!(gif.len(), 43);
        let error = process_profile_photo(gif).expect_err("refused");
        assert!(matches!(error, PhotoError::UnsupportedFormat), "{error:?}");
        assert_eq!(error.to_string(), "not a JPEG, PNG or WebP image");
    }

    #[test]
    fn other_formats_and_text_are_unsupported() {
        // A 1×1 24-bit BMP: file header, BITMAPINFOHEADER, one padded pixel.
        let mut bmp = b"BM".to_vec();
        for field in [58u32, 0, 54, 40, 1, 1] {
            bmp.extend_from_slice(&field.to_le_bytes());
        }
        bmp.extend_from_slice(&[1, 0, 24, 0]); // one plane, 24 bits a pixel
        for field in [0u32, 4, 2835, 2835, 0, 0] {
            bmp.extend_from_slice(&field.to_le_bytes());
        }
        bmp.extend_from_slice(&[0, 0, 255, 0]);
        assert_eq!(bmp.len(), 58);
        let inputs: [&[u8]; 4] = [
            b"this is not a photo",
            &bmp,
            b"\xFF\xD8", // a JPEG's SOI and nothing more is too short to sniff
            b"RIFF\x10\x00\x00\x00WAVEfmt ",
        ];
        for input in inputs {
            let error = process_profile_photo(input).expect_err("refused");
            assert!(
                matches!(error, PhotoError::UnsupportedFormat),
                "{input:?}: {error:?}"
            );
        }
    }

    #[test]
    fn empty_and_oversized_inputs_are_refused() {
        assert!(matches!(process_profile_photo(&[]), Err(PhotoError::Empty)));

        // A real JPEG start, padded past the cap: refused on size before anything is parsed.
        let mut big = encode(&DynamicImage::ImageRgb8(pattern(16, 16)), ImageFormat::Jpeg);
        big.resize(MAX_PHOTO_BYTES + 1, 0);
        let error = process_profile_photo(&big).expect_err("refused");
        assert!(
            matches!(error, PhotoError::TooLarge { size, max: MAX_PHOTO_BYTES } if size == MAX_PHOTO_BYTES + 1),
            "{error:?}"
        );
    }
}
