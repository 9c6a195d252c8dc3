//! S3 key pieces derived from untrusted mail: attachment filenames made safe for keys and disks.
//!
//! A filename comes from the sender. It may hold path separators, `..`, control characters,
//! bidirectional overrides that disguise an extension, Windows device names or a megabyte of
//! text. [`safe_filename`] keeps what a person would recognise (Unicode letters, the extension)
//! and removes the rest, so the name can sit at the end of a key or be written to a folder.

/// Longest safe filename in bytes; S3 keys allow 1024 and the rest of the key needs room.
pub const MAX_FILENAME_BYTES: usize = 100;

/// Longest extension kept apart from the stem when a long name is shortened.
const MAX_EXTENSION_BYTES: usize = 16;

/// A filename safe for the last segment of an S3 key or a file-system path.
///
/// The result never contains `/`, `\`, `..`, control or invisible formatting characters, never
/// starts with `.` or ends with `.` or a space, is at most [`MAX_FILENAME_BYTES`] bytes (cut on
/// a character boundary, keeping the extension) and is never empty: without a usable name it is
/// `attachment-<index>.<extension for content_type>`.
pub fn safe_filename(name: Option<&str>, index: usize, content_type: &str) -> String {
    let cleaned = name.map(clean).unwrap_or_default();
    if cleaned.is_empty() {
        return format!("attachment-{index}.{}", extension_for(content_type));
    }
    cleaned
}

fn clean(name: &str) -> String {
    // Only the last path segment is a filename; "../../etc/passwd" becomes "passwd".
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);

    let mut out = String::with_capacity(base.len().min(4 * MAX_FILENAME_BYTES));
    let mut last_was_sep = false;
    for c in base.chars() {
        let mapped = if c.is_whitespace() {
            Some('_')
        } else if c.is_control() || is_invisible_format(c) {
            None
        } else if matches!(
            c,
            ':' | '*'
                | '?'
                | '"'
                | '<'
                | '>'
                | '|'
                | '#'
                | '%'
                | '{'
                | '}'
                | '^'
                | '~'
                | '['
                | ']'
                | '`'
        ) {
            Some('_')
        } else {
            Some(c)
        };
        let Some(c) = mapped else { continue };
        if c == '_' {
            if last_was_sep {
                continue;
            }
            last_was_sep = true;
        } else {
            last_was_sep = false;
        }
        // Collapse runs of dots so ".." can never appear.
        if c == '.' && out.ends_with('.') {
            continue;
        }
        out.push(c);
        if out.len() > 8 * MAX_FILENAME_BYTES {
            break;
        }
    }

    let trimmed = out
        .trim_start_matches(['.', '_', '-'])
        .trim_end_matches(['.', '_', ' ']);
    let mut name = trimmed.to_string();
    if name.is_empty() {
        return name;
    }
    if is_windows_device(&name) {
        name.insert(0, '_');
    }
    shorten(&name)
}

/// Cuts to [`MAX_FILENAME_BYTES`] on a char boundary, keeping a short extension.
fn shorten(name: &str) -> String {
    if name.len() <= MAX_FILENAME_BYTES {
        return name.to_string();
    }
    let ext = name
        .rfind('.')
        .map(|dot| &name[dot..])
        .filter(|ext| ext.len() <= MAX_EXTENSION_BYTES + 1 && ext.len() > 1);
    let ext = ext.unwrap_or("");
    let stem = &name[..name.len() - ext.len()];
    let mut cut = MAX_FILENAME_BYTES - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem = stem[..cut].trim_end_matches(['.', '_', ' ']);
    format!("{stem}{ext}")
}

/// Zero-width and bidirectional formatting characters: invisible, and used to disguise names.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

fn is_windows_device(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit())
}

/// A file extension for a MIME type, for attachments that arrive without a name.
pub fn extension_for(content_type: &str) -> &'static str {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/pdf" => "pdf",
        "application/zip" | "application/x-zip-compressed" => "zip",
        "application/gzip" | "application/x-gzip" => "gz",
        "application/json" => "json",
        "application/xml" | "text/xml" => "xml",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.ms-powerpoint" => "ppt",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => "pptx",
        "application/pkcs7-signature" | "application/x-pkcs7-signature" => "p7s",
        "application/pgp-signature" => "asc",
        "application/ics" | "text/calendar" => "ics",
        "image/png" => "png",
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        "image/bmp" => "bmp",
        "image/tiff" => "tiff",
        "audio/mpeg" => "mp3",
        "audio/wav" | "audio/x-wav" => "wav",
        "video/mp4" => "mp4",
        "text/plain" => "txt",
        "text/html" => "html",
        "text/csv" => "csv",
        "text/vcard" | "text/x-vcard" => "vcf",
        "message/rfc822" | "message/global" => "eml",
        "message/delivery-status" | "message/global-delivery-status" => "txt",
        other if other.starts_with("text/") => "txt",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe(name: &str) -> String {
        safe_filename(Some(name), 3, "application/pdf")
    }

    fn assert_safe(s: &str) {
        assert!(!s.is_empty());
        assert!(s.len() <= MAX_FILENAME_BYTES, "{s:?} is {} bytes", s.len());
        assert!(!s.contains('/') && !s.contains('\\'), "{s:?}");
        assert!(!s.contains(".."), "{s:?}");
        assert!(!s.starts_with('.'), "{s:?}");
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
    }

    #[test]
    fn ordinary_names_pass_through() {
        assert_eq!(safe("invoice-2024.pdf"), "invoice-2024.pdf");
        assert_eq!(safe("Résumé é 日本語.pdf"), "Résumé_é_日本語.pdf");
    }

    #[test]
    fn path_traversal_keeps_only_the_last_segment() {
        assert_eq!(safe("../../etc/passwd"), "passwd");
        assert_eq!(safe("..\\..\\windows\\system32\\cmd.exe"), "cmd.exe");
        assert_eq!(safe("/absolute/path/x.txt"), "x.txt");
        assert_eq!(safe("a/.."), "attachment-3.pdf");
        assert_eq!(safe(".."), "attachment-3.pdf");
        assert_eq!(safe("x..y....pdf"), "x.y.pdf");
    }

    #[test]
    fn hidden_and_trailing_dots_are_removed() {
        assert_eq!(safe(".htaccess"), "htaccess");
        assert_eq!(safe("...bashrc"), "bashrc");
        assert_eq!(safe("report.pdf. . ."), "report.pdf");
    }

    #[test]
    fn control_and_bidi_characters_are_removed() {
        assert_eq!(safe("a\0b\r\nc\x07.txt"), "ab_c.txt");
        // U+202E would display "invoice\u{202E}fdp.exe" as "invoiceexe.pdf".
        assert_eq!(safe("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(safe("zero\u{200b}width\u{feff}.txt"), "zerowidth.txt");
    }

    #[test]
    fn reserved_characters_and_devices_are_neutralised() {
        assert_eq!(safe("what?<is>|this*:\"x\".txt"), "what_is_this_x_.txt");
        assert_eq!(safe("CON.txt"), "_CON.txt");
        assert_eq!(safe("lpt1"), "_lpt1");
        assert_eq!(safe("console.txt"), "console.txt");
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(300));
        let s = safe(&long);
        assert_safe(&s);
        assert!(s.ends_with(".pdf"), "{s}");
        assert!(s.len() > MAX_FILENAME_BYTES - 4, "{}", s.len());

        let no_ext = "x".repeat(5000);
        assert_eq!(safe(&no_ext).len(), MAX_FILENAME_BYTES);

        let weird_ext = format!("a.{}", "b".repeat(400));
        assert_safe(&safe(&weird_ext));
    }

    #[test]
    fn empty_or_unusable_names_fall_back_to_the_index() {
        assert_eq!(safe_filename(None, 0, "image/png"), "attachment-0.png");
        assert_eq!(
            safe_filename(Some(""), 7, "text/plain; charset=utf-8"),
            "attachment-7.txt"
        );
        assert_eq!(
            safe_filename(Some("\u{202e}\0/"), 2, "weird/thing"),
            "attachment-2.bin"
        );
        assert_eq!(
            safe_filename(Some("   "), 1, "message/rfc822"),
            "attachment-1.eml"
        );
    }

    #[test]
    fn hostile_names_always_come_out_safe() {
        let hostile = [
            "../../../../",
            "....//....//",
            "\u{0}\u{1}\u{2}",
            "a\\..\\..\\b",
            ". .",
            "-rf",
            "名前.とても長い拡張子ですとても長い拡張子です",
            &"🦀".repeat(100),
            &format!("{}.{}", "a".repeat(99), "🦀".repeat(10)),
        ];
        for name in hostile {
            assert_safe(&safe(name));
        }
    }
}
