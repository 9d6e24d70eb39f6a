//! Thumbnails of image attachments: a JPEG of at most [`THUMBNAIL_SIDE`] pixels a side and
//! under [`MAX_THUMBNAIL_BYTES`], small enough to travel inside the message itself so the
//! receiver can show a preview before fetching the attachment.
//!
//! The bytes may be anything the user picked, or a file another app left behind, so they are
//! handled as untrusted: the format is sniffed from the content (never the file name), the
//! dimensions are checked from the header before any pixel is decoded, and the decoder runs under
//! [`image::Limits`]. The thumbnail is re-encoded from pixels, so none of the original's metadata
//! (EXIF with its GPS position, ICC, XMP, comments) goes along with it.
//!
//! The decoding rules are the media service's for profile photos: both use `juntos_imaging`.
//!
//! Decoding is CPU-bound and [`thumbnail_of_file`] reads a file: async callers run both on a
//! blocking thread.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use image::RgbImage;

/// The longest side of a thumbnail, in pixels.
pub(crate) const THUMBNAIL_SIDE: u32 = 64;

/// Every thumbnail is smaller than this, in bytes.
pub(crate) const MAX_THUMBNAIL_BYTES: usize = 8 * 1024;

/// The largest image file a thumbnail is made of, in bytes (the image attachment cap).
pub(crate) const MAX_IMAGE_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The JPEG qualities tried in turn until the thumbnail fits in [`MAX_THUMBNAIL_BYTES`]; a
/// 64-pixel JPEG fits at the first nearly always.
const QUALITIES: [u8; 6] = [60, 50, 40, 30, 20, 10];

/// A thumbnail and the size of the image it shows.
pub(crate) struct Thumbnail {
    /// A baseline JPEG of at most [`THUMBNAIL_SIDE`] pixels a side, under
    /// [`MAX_THUMBNAIL_BYTES`], with no metadata.
    pub jpeg: Vec<u8>,
    /// The original image's width in pixels, as displayed (after its EXIF orientation, so a
    /// portrait phone photo is reported taller than wide, like the thumbnail).
    pub width: u32,
    /// The original image's height in pixels, as displayed.
    pub height: u32,
}

impl std::fmt::Debug for Thumbnail {
    /// Sizes only: the bytes are a user's picture.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thumbnail")
            .field("jpeg_bytes", &self.jpeg.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// A small JPEG preview of an image file's bytes, or `None` when they are not a JPEG, PNG or WebP
/// image, are damaged or truncated, or exceed a limit above (over [`MAX_IMAGE_FILE_BYTES`], over
/// [`juntos_imaging::MAX_SIDE`] on a side, over [`juntos_imaging::MAX_PIXELS`]). Images already within [`THUMBNAIL_SIDE`] keep
/// their size; larger ones are scaled down keeping their aspect ratio.
pub(crate) fn thumbnail(image_bytes: &[u8]) -> Option<Thumbnail> {
    let within_cap = u64::try_from(image_bytes.len()).is_ok_and(|n| n <= MAX_IMAGE_FILE_BYTES);
    if !within_cap {
        return None;
    }
    let image = juntos_imaging::decode(image_bytes).ok()?;
    let (width, height) = (image.width(), image.height());
    let (thumb_width, thumb_height) = fit(width, height);
    let small = juntos_imaging::flatten_on_white(image.thumbnail_exact(thumb_width, thumb_height));
    drop(image);
    let jpeg = QUALITIES
        .iter()
        .filter_map(|&quality| encode_jpeg(&small, quality))
        .find(|jpeg| jpeg.len() < MAX_THUMBNAIL_BYTES)?;
    Some(Thumbnail {
        jpeg,
        width,
        height,
    })
}

/// [`thumbnail`] of the file at `path`, which is read only if it is a regular file of at most
/// [`MAX_IMAGE_FILE_BYTES`]; `None` otherwise, and when it cannot be read.
pub(crate) fn thumbnail_of_file(path: &Path) -> Option<Thumbnail> {
    let file = File::open(path).ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() || metadata.len() > MAX_IMAGE_FILE_BYTES {
        return None;
    }
    // The file may grow between the size check and the read: read one byte past the cap at
    // most, and refuse if that byte arrives.
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).ok()?);
    file.take(MAX_IMAGE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    thumbnail(&bytes)
}

/// The MIME type of an image the first bytes of a file show it to be: `"image/jpeg"`,
/// `"image/png"` or `"image/webp"`, and `None` for anything else, whatever the file is called.
/// Twelve bytes are enough (a WebP shows itself at bytes 8 to 11).
pub(crate) fn is_image_mime(bytes_prefix: &[u8]) -> Option<&'static str> {
    juntos_imaging::sniff(bytes_prefix).map(|format| format.to_mime_type())
}

/// The thumbnail size of a `width`×`height` image: within [`THUMBNAIL_SIDE`] on both sides,
/// the same aspect ratio as near as whole pixels allow, never larger than the image.
fn fit(width: u32, height: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= THUMBNAIL_SIDE {
        return (width, height);
    }
    let scale = |side: u32| {
        let scaled = (u64::from(side) * u64::from(THUMBNAIL_SIDE) + u64::from(longest) / 2)
            / u64::from(longest);
        // At most THUMBNAIL_SIDE, since side <= longest.
        u32::try_from(scaled).unwrap_or(THUMBNAIL_SIDE).max(1)
    };
    (scale(width), scale(height))
}

/// A baseline JPEG of `image`, carrying nothing but the JFIF header and the pixels.
fn encode_jpeg(image: &RgbImage, quality: u8) -> Option<Vec<u8>> {
    juntos_imaging::encode_jpeg(image, quality).ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use image::{Rgb, Rgba, RgbaImage};

    use image::{DynamicImage, ImageFormat};

    use juntos_testkit::images::png_header_only;

    use super::*;

    use juntos_testkit::images::{encode, pattern};

    /// Asserts `thumb` is a metadata-free JPEG of `width`×`height` under the size cap.
    fn assert_thumbnail_jpeg(thumb: &Thumbnail, width: u32, height: u32) {
        assert!(thumb.jpeg.len() < MAX_THUMBNAIL_BYTES, "{thumb:?}");
        assert_eq!(
            image::guess_format(&thumb.jpeg).ok(),
            Some(ImageFormat::Jpeg)
        );
        assert!(
            !thumb.jpeg.windows(4).any(|w| w == b"Exif"),
            "no Exif segment"
        );
        let decoded = image::load_from_memory_with_format(&thumb.jpeg, ImageFormat::Jpeg)
            .expect("the thumbnail decodes");
        assert_eq!((decoded.width(), decoded.height()), (width, height));
    }

    #[test]
    fn png_400_by_200_becomes_a_64_by_32_jpeg() {
        let png = encode(
            &DynamicImage::ImageRgb8(pattern(400, 200)),
            ImageFormat::Png,
        );
        let thumb = thumbnail(&png).expect("a thumbnail");
        assert_eq!((thumb.width, thumb.height), (400, 200));
        assert_thumbnail_jpeg(&thumb, 64, 32);
    }

    #[test]
    fn jpeg_and_webp_too_and_portrait_keeps_its_shape() {
        let image = DynamicImage::ImageRgb8(pattern(300, 1000));
        for format in [ImageFormat::Jpeg, ImageFormat::WebP] {
            let thumb = thumbnail(&encode(&image, format)).expect("a thumbnail");
            assert_eq!((thumb.width, thumb.height), (300, 1000));
            assert_thumbnail_jpeg(&thumb, 19, 64);
        }
    }

    #[test]
    fn exif_orientation_is_applied_and_dropped() {
        let jpeg = encode(
            &DynamicImage::ImageRgb8(pattern(100, 200)),
            ImageFormat::Jpeg,
        );
        // APP1 after SOI: "Exif\0\0", a little-endian TIFF header, one IFD entry saying
        // orientation 6 (rotate 90° clockwise), no next IFD, then a GPS-looking string.
        let mut app1 =
            b"Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0".to_vec();
        app1.extend_from_slice(b"GPS-SECRET-47.61N");
        let length = u16::try_from(app1.len() + 2).expect("small").to_be_bytes();
        let mut input = vec![0xFF, 0xD8, 0xFF, 0xE1, length[0], length[1]];
        input.extend_from_slice(&app1);
        input.extend_from_slice(&jpeg[2..]);

        let thumb = thumbnail(&input).expect("a thumbnail");
        assert_eq!((thumb.width, thumb.height), (200, 100), "as displayed");
        assert_thumbnail_jpeg(&thumb, 64, 32);
        assert!(!thumb.jpeg.windows(10).any(|w| w == b"GPS-SECRET"));
    }

    #[test]
    fn small_images_are_not_scaled_up() {
        let png = encode(&DynamicImage::ImageRgb8(pattern(10, 7)), ImageFormat::Png);
        let thumb = thumbnail(&png).expect("a thumbnail");
        assert_thumbnail_jpeg(&thumb, 10, 7);
    }

    #[test]
    fn noise_still_fits_under_the_cap() {
        // Incompressible pixels: the worst case for the size cap.
        let mut state = 0x2545_F491u32;
        let noise = RgbImage::from_fn(64, 64, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let [r, g, b, _] = state.to_le_bytes();
            Rgb([r, g, b])
        });
        let png = encode(&DynamicImage::ImageRgb8(noise), ImageFormat::Png);
        let thumb = thumbnail(&png).expect("a thumbnail");
        assert_thumbnail_jpeg(&thumb, 64, 64);
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let clear = RgbaImage::from_pixel(128, 128, Rgba([0, 0, 0, 0]));
        let png = encode(&DynamicImage::ImageRgba8(clear), ImageFormat::Png);
        let thumb = thumbnail(&png).expect("a thumbnail");
        let decoded = image::load_from_memory(&thumb.jpeg)
            .expect("decodes")
            .into_rgb8();
        let [r, g, b] = decoded.get_pixel(32, 32).0;
        assert!(r > 240 && g > 240 && b > 240, "{:?}", [r, g, b]);
    }

    #[test]
    fn text_and_other_formats_give_none() {
        let gif: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00\
            !\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
        for input in [
            &b"this is not a photo"[..],
            b"",
            gif,
            b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0",
        ] {
            assert!(thumbnail(input).is_none(), "{input:?}");
        }
    }

    #[test]
    fn truncated_images_give_none() {
        let image = DynamicImage::ImageRgb8(pattern(256, 256));
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let whole = encode(&image, format);
            assert!(thumbnail(&whole).is_some(), "{format:?} whole");
            assert!(
                thumbnail(&whole[..whole.len() / 2]).is_none(),
                "{format:?} half"
            );
        }
    }

    #[test]
    fn png_bomb_header_gives_none_fast() {
        let started = Instant::now();
        assert!(thumbnail(&png_header_only(50_000, 50_000)).is_none());
        assert!(thumbnail(&png_header_only(8000, 6000)).is_none()); // 48 megapixels
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn files_are_read_only_within_the_cap() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A PNG named as text: the name does not matter, the content does.
        let named_wrong = dir.path().join("notes.txt");
        let png = encode(
            &DynamicImage::ImageRgb8(pattern(400, 200)),
            ImageFormat::Png,
        );
        std::fs::write(&named_wrong, &png).expect("write");
        let thumb = thumbnail_of_file(&named_wrong).expect("a thumbnail");
        assert_eq!((thumb.width, thumb.height), (400, 200));

        // One byte over the cap, sparse so the test writes nothing much.
        let big = dir.path().join("big.png");
        let file = File::create(&big).expect("create");
        file.set_len(MAX_IMAGE_FILE_BYTES + 1).expect("set_len");
        assert!(thumbnail_of_file(&big).is_none());

        assert!(thumbnail_of_file(dir.path()).is_none(), "a directory");
        assert!(thumbnail_of_file(&dir.path().join("missing.jpg")).is_none());
    }

    #[test]
    fn mime_types_come_from_magic_bytes() {
        let image = DynamicImage::ImageRgb8(pattern(4, 4));
        for (format, mime) in [
            (ImageFormat::Jpeg, "image/jpeg"),
            (ImageFormat::Png, "image/png"),
            (ImageFormat::WebP, "image/webp"),
        ] {
            let bytes = encode(&image, format);
            assert_eq!(is_image_mime(&bytes[..12]), Some(mime), "{format:?}");
        }
        assert_eq!(is_image_mime(b"this is not a photo"), None);
        assert_eq!(is_image_mime(b"GIF89a\x01\x00\x01\x00"), None);
        assert_eq!(is_image_mime(b"RIFF\x10\x00\x00\x00WAVE"), None);
        assert_eq!(is_image_mime(b""), None);
    }

    #[test]
    fn fit_keeps_the_aspect_ratio() {
        assert_eq!(fit(400, 200), (64, 32));
        assert_eq!(fit(200, 400), (32, 64));
        assert_eq!(fit(8192, 1), (64, 1));
        assert_eq!(fit(64, 64), (64, 64));
        assert_eq!(fit(3, 5), (3, 5));
    }
}
