//! The new text of a reply, apart from the message it quotes and from the sender's signature.
//!
//! Apps that take replies by email want what the person just wrote. [`reply`] finds where the
//! quoted history starts — a quote element in the HTML body (Gmail, Outlook, Apple Mail, Yahoo,
//! Thunderbird), an attribution line (`On … wrote:` in fourteen languages), an
//! `-----Original Message-----` separator, an Outlook header block, `>`-prefixed lines — and cuts
//! it out; `>` lines between new lines (an interleaved answer) go, the new lines stay. A forwarded
//! message is not a quote and is kept. Then [`split_signature`] separates a trailing signature,
//! preferring to miss one over cutting words the sender wrote.
//!
//! Everything here is a single forward pass over lines or tags, without recursion: a hostile body
//! (100,000 quoted lines, a megabyte on one line, thousands of nested blockquotes) costs time in
//! proportion to its size.

use serde::{Deserialize, Serialize};

use super::html::html_to_text;

/// What was found of a reply in a message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The new text: the body without the quoted message and without the signature.
    pub text: String,
    /// The sender's signature below the new text, when one was recognised.
    pub signature: Option<String>,
    /// What decided where the quote starts.
    pub method: Method,
}

/// What decided where the quoted message starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A quote element in the HTML body (`div.gmail_quote`, `blockquote`, `#divRplyFwdMsg`, …).
    HtmlQuote,
    /// An attribution line such as `On Mon, 1 Jan 2024, Bob <b@x> wrote:`.
    Attribution,
    /// A separator: `-----Original Message-----`, an Outlook `From:`/`Sent:` block, a rule.
    Separator,
    /// Lines starting with `>` and nothing else.
    QuotePrefix,
    /// No quote found: the whole body is new text.
    None,
}

impl Reply {
    /// The reply as written without the quote: the new text and, below it, the signature.
    pub fn unquoted(&self) -> String {
        match &self.signature {
            Some(sig) if self.text.is_empty() => sig.clone(),
            Some(sig) => format!("{}\n\n{sig}", self.text),
            None => self.text.clone(),
        }
    }
}

/// What, besides its bodies, tells where a message's reply ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The From (name and address, any form): a signature may be only the sender's name.
    pub sender: &'a str,
    /// The Subject: under `Fw:` a header block or `-----Original Message-----` opens the message
    /// being forwarded, which is content, not a quote.
    pub subject: &'a str,
}

/// The reply in a body. `html` is used when it holds a quote element; otherwise `text` (or, with
/// no text, the HTML's text). `None` when there is no body at all.
pub fn reply(text: Option<&str>, html: Option<&str>, cx: Context<'_>) -> Option<Reply> {
    let forward = is_forward_subject(cx.subject);
    let from_html = html.and_then(|h| strip_html_quotes(h, forward));
    let (body, method) = match (from_html, text) {
        (Some(rest), _) => {
            // What is left of the HTML may still carry a quote its client did not mark up.
            let (body, _) = strip_quotes(&rest, forward);
            (body, Method::HtmlQuote)
        }
        (None, Some(text)) => strip_quotes(text, forward),
        (None, None) => strip_quotes(&html_to_text(html?), forward),
    };
    let (text, signature) = split_signature(&body, cx.sender);
    Some(Reply {
        text,
        signature,
        method,
    })
}

/// Subject prefixes of a forward (en, de, fr, es, it, pt, nl, pl, sv, da/no, fi, ru, zh).
const FORWARD_PREFIXES: &[&str] = &[
    "fw",
    "fwd",
    "wg",
    "tr",
    "rv",
    "i",
    "inoltro",
    "enc",
    "doorst",
    "pd",
    "vb",
    "vs",
    "vl",
    "пересл",
    "fwd",
    "转发",
    "轉寄",
];

/// The subject's first prefix says the message is a forward (`Fwd: Re: x` is; `Re: Fwd: x`, a
/// reply to one, is not).
pub fn is_forward_subject(subject: &str) -> bool {
    let t = subject.trim_start();
    let Some(end) = t.find([':', '：']) else {
        return false;
    };
    let prefix = t[..end].trim().to_lowercase();
    FORWARD_PREFIXES.contains(&prefix.as_str())
}

/// Removes the quoted part of a plain-text body; returns what is left and what decided. In a
/// `forward`, a separator or header block opens the forwarded message and is kept with it.
pub fn strip_quotes(text: &str, forward: bool) -> (String, Method) {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    let mut method = Method::None;
    let mut decide = |m: Method| {
        if method == Method::None {
            method = m;
        }
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        // Before the forward check: a forward inside the quoted message is part of the quote.
        if is_quoted(line) {
            decide(Method::QuotePrefix);
            i += 1;
            continue;
        }
        if is_forward_marker(t) {
            kept.extend_from_slice(&lines[i..]);
            break;
        }
        if let Some(len) = attribution_at(&lines, i) {
            decide(Method::Attribution);
            if next_is_quoted(&lines, i + len) {
                // The quote below it is `>`-prefixed: new lines may follow it (interleaved).
                i += len;
                continue;
            }
            break;
        }
        if is_separator(t) || header_block_at(&lines, i) || rule_above_header_block(&lines, i) {
            if forward {
                kept.extend_from_slice(&lines[i..]);
            } else {
                decide(Method::Separator);
            }
            break;
        }
        kept.push(line);
        i += 1;
    }
    (tidy(&kept), method)
}

/// Joins lines, drops blank lines at both ends and runs of more than one blank line left where
/// quoted lines were cut out.
fn tidy(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut blanks = 0usize;
    for line in lines {
        if line.trim().is_empty() {
            blanks += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blanks > 0 { "\n\n" } else { "\n" });
        }
        blanks = 0;
        out.push_str(line.trim_end());
    }
    out
}

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

fn next_is_quoted(lines: &[&str], from: usize) -> bool {
    lines[from.min(lines.len())..]
        .iter()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| is_quoted(l))
}

/// Longest line an attribution is looked for in: real ones are short, and the bound keeps a
/// megabyte-long line from being lowercased and searched again for each line that wraps into it.
const MAX_ATTRIBUTION: usize = 400;

/// Words that end an attribution line, before its colon, per language: en, de, fr, es, it, nl,
/// pt, pl, sv/da/no, ru, cs, fi, tr.
const ATTRIBUTION_VERBS: &[&str] = &[
    "wrote",
    "writes",
    "schrieb",
    "a écrit",
    "escribió",
    "escribio",
    "ha scritto",
    "schreef",
    "geschreven",
    "escreveu",
    "pisze",
    "napisał",
    "napisała",
    "napisał(a)",
    "skrev",
    "написал",
    "написала",
    "написал(а)",
    "пишет",
    "napsal",
    "napsal(a)",
    "kirjoitti",
    "yazdı",
];

/// Attribution markers of scripts without word spaces (zh, ja).
const ATTRIBUTION_CJK: &[&str] = &[
    "写道",
    "寫道",
    "書きました",
    "のメッセージ",
    "さんは書きました",
];

/// How attributions begin: "On", "Am", "Le", "El", "Il", "Op", "Em", "W dniu", "Den", "På", "Dne",
/// "В", "在", "Am …".
const ATTRIBUTION_LEADS: &[&str] = &[
    "on ", "am ", "le ", "el ", "il ", "op ", "em ", "w dniu ", "den ", "på ", "dne ", "в ", "в ",
    "在",
];

/// The number of lines (1 to 3) of an attribution starting at `lines[i]`, if one does.
fn attribution_at(lines: &[&str], i: usize) -> Option<usize> {
    let first = lines[i].trim();
    if first.is_empty() || first.len() > MAX_ATTRIBUTION {
        return None;
    }
    let mut joined = first.to_lowercase();
    let wrapped_start =
        starts_with_lead(&joined) || first.starts_with(|c: char| c.is_ascii_digit());
    for len in 1..=3 {
        if len > 1 {
            // A wrapped attribution: only lines that begin like one may be joined with the next.
            let next = lines.get(i + len - 1)?.trim();
            if !wrapped_start || next.is_empty() || next.len() > MAX_ATTRIBUTION || is_quoted(next)
            {
                return None;
            }
            joined.push(' ');
            joined.push_str(&next.to_lowercase());
        }
        if is_attribution(&joined, || next_is_quoted(lines, i + len)) {
            return Some(len);
        }
        if joined.ends_with(':') || joined.ends_with('：') {
            // A line ending in a colon that is no attribution does not continue into one.
            return None;
        }
    }
    None
}

fn starts_with_lead(lower: &str) -> bool {
    ATTRIBUTION_LEADS.iter().any(|lead| lower.starts_with(lead))
}

/// `lower` (one or a few joined lines, lowercased) is an attribution: it ends in a colon after an
/// attribution verb and looks like one (a lead word, a date, an address, or a quote below it).
fn is_attribution(lower: &str, quote_follows: impl Fn() -> bool) -> bool {
    let Some(body) = lower.strip_suffix(':').or_else(|| lower.strip_suffix('：')) else {
        return false;
    };
    let body = body.trim_end();
    if ATTRIBUTION_CJK.iter().any(|m| body.contains(m)) {
        return true;
    }
    let has_verb = ATTRIBUTION_VERBS.iter().any(|v| contains_word(body, v));
    has_verb
        && (starts_with_lead(body)
            || body.contains(|c: char| c.is_ascii_digit() || c == '@')
            || quote_follows())
}

/// `needle` occurs in `hay` with no letter or digit right before or after it.
fn contains_word(hay: &str, needle: &str) -> bool {
    let mut from = 0;
    while let Some(pos) = hay[from..].find(needle) {
        let start = from + pos;
        let end = start + needle.len();
        let before = hay[..start].chars().next_back();
        let after = hay[end..].chars().next();
        if !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric) {
            return true;
        }
        from = end;
    }
    false
}

/// Names of the original message in separator lines (`-----Original Message-----`) per language.
const SEPARATOR_NAMES: &[&str] = &[
    "original message",
    "reply message",
    "ursprüngliche nachricht",
    "original-nachricht",
    "originalnachricht",
    "message d'origine",
    "message original",
    "mensaje original",
    "messaggio originale",
    "messaggio originale",
    "oorspronkelijk bericht",
    "origineel bericht",
    "oorspronkelijk e-mailbericht",
    "mensagem original",
    "wiadomość oryginalna",
    "oryginalna wiadomość",
    "originalmeddelande",
    "ursprungligt meddelande",
    "oprindelig meddelelse",
    "opprinnelig melding",
    "исходное сообщение",
    "原始邮件",
    "原始郵件",
    "元のメッセージ",
    "alkuperäinen viesti",
    "původní zpráva",
];

fn is_separator(t: &str) -> bool {
    if !t.starts_with(['-', '_', '=', '*']) || t.len() > 120 {
        return false;
    }
    let inner = t
        .trim_matches(|c: char| matches!(c, '-' | '_' | '=' | '*') || c.is_whitespace())
        .to_lowercase();
    SEPARATOR_NAMES.contains(&inner.as_str())
}

/// Lines that open a forwarded message, which stays part of the new text.
const FORWARD_MARKERS: &[&str] = &[
    "forwarded message",
    "begin forwarded message",
    "forwarded by",
    "weitergeleitete nachricht",
    "message transféré",
    "mensaje reenviado",
    "messaggio inoltrato",
    "doorgestuurd bericht",
    "mensagem encaminhada",
    "wiadomość przekazana",
    "vidarebefordrat meddelande",
    "videresendt meddelelse",
    "videresendt melding",
    "пересылаемое сообщение",
    "转发的邮件",
    "転送されたメッセージ",
];

fn is_forward_marker(t: &str) -> bool {
    t.len() <= 160 && {
        let lower = t.to_lowercase();
        FORWARD_MARKERS.iter().any(|m| lower.contains(m))
    }
}

/// Labels of the first line of an Outlook-style header block (From), per language.
const FROM_LABELS: &[&str] = &[
    "from",
    "von",
    "de",
    "da",
    "van",
    "från",
    "fra",
    "od",
    "от",
    "发件人",
    "寄件者",
    "差出人",
    "lähettäjä",
];

/// Labels of the lines that follow it (Sent, Date, To, Cc, Subject), per language.
const HEADER_LABELS: &[&str] = &[
    "sent",
    "date",
    "to",
    "cc",
    "subject",
    "gesendet",
    "datum",
    "an",
    "betreff",
    "envoyé",
    "à",
    "objet",
    "enviado",
    "fecha",
    "para",
    "asunto",
    "inviato",
    "data",
    "a",
    "oggetto",
    "verzonden",
    "verstuurd",
    "aan",
    "onderwerp",
    "assunto",
    "wysłano",
    "do",
    "temat",
    "skickat",
    "till",
    "ämne",
    "sendt",
    "til",
    "emne",
    "отправлено",
    "кому",
    "тема",
    "дата",
    "发送时间",
    "收件人",
    "主题",
    "日付",
    "送信日時",
    "宛先",
    "件名",
    "lähetetty",
    "vastaanottaja",
    "aihe",
];

/// The header label `line` starts with (`*From:*`, `From :`, `发件人：`), lowercased.
fn header_label(line: &str) -> Option<String> {
    let t = line.trim().trim_start_matches('*');
    let colon = t.find([':', '：'])?;
    let label = t[..colon].trim_end_matches('*').trim();
    (!label.is_empty() && label.chars().count() <= 20).then(|| label.to_lowercase())
}

/// `lines[i]` opens a block of quoted headers: a From line and at least two more header lines
/// among the next few.
fn header_block_at(lines: &[&str], i: usize) -> bool {
    let Some(label) = header_label(lines[i]) else {
        return false;
    };
    if !FROM_LABELS.contains(&label.as_str()) {
        return false;
    }
    let headers = lines[i + 1..]
        .iter()
        .take(6)
        .filter_map(|l| header_label(l))
        .filter(|l| HEADER_LABELS.contains(&l.as_str()))
        .count();
    headers >= 2
}

/// An underscore or dash rule with a header block right below it (Outlook's plain text).
fn rule_above_header_block(lines: &[&str], i: usize) -> bool {
    let t = lines[i].trim();
    t.len() >= 8
        && (t.bytes().all(|b| b == b'_') || t.bytes().all(|b| b == b'-'))
        && lines[i + 1..]
            .iter()
            .position(|l| !l.trim().is_empty())
            .is_some_and(|p| p <= 1 && header_block_at(lines, i + 1 + p))
}

// ---------------------------------------------------------------------------------------------
// HTML

/// Attribute values that mark a quote container to remove with its content.
const QUOTE_CLASSES: &[&str] = &["gmail_quote", "yahoo_quoted", "moz-cite-prefix"];

/// Ids after which everything is the quoted message (Outlook, Outlook on the web, Hotmail).
const QUOTE_TAIL_IDS: &[&str] = &[
    "divrplyfwdmsg",
    "appendonsend",
    "mail-editor-reference-message-container",
    "stopspelling",
];

/// How many bytes of a quote element are searched for a forward marker.
const FORWARD_PROBE: usize = 4096;

/// The text of `html` without its quote elements, or `None` when it has none.
fn strip_html_quotes(html: &str, forward: bool) -> Option<String> {
    let mut kept = String::with_capacity(html.len());
    let mut copied = 0;
    let mut found = false;
    let mut pos = 0;
    while let Some(tag) = next_tag(html, pos) {
        pos = tag.end;
        if tag.closing {
            continue;
        }
        let attrs = tag.attrs.to_ascii_lowercase();
        // Outlook marks a forwarded message as it marks a quoted one.
        if !forward
            && QUOTE_TAIL_IDS
                .iter()
                .any(|id| has_attr_word(&attrs, "id", id))
        {
            kept.push_str(&html[copied..tag.start]);
            copied = html.len();
            found = true;
            break;
        }
        let quote = QUOTE_CLASSES
            .iter()
            .any(|c| has_attr_word(&attrs, "class", c))
            || tag.name == "blockquote";
        if !quote || tag.self_closing {
            continue;
        }
        let end = element_end(html, &tag);
        if is_forward_html(&html[tag.end..end]) {
            // A forwarded message in a quote container is content: keep it whole.
            pos = end;
            continue;
        }
        kept.push_str(&html[copied..tag.start]);
        copied = end;
        pos = end;
        found = true;
    }
    if !found {
        return None;
    }
    kept.push_str(&html[copied..]);
    Some(html_to_text(&kept))
}

/// The start of a quote element (up to its first nested blockquote, where a quoted message
/// would start) says it is a forwarded message.
fn is_forward_html(inside: &str) -> bool {
    let probe_end = floor_char_boundary(inside, inside.len().min(FORWARD_PROBE));
    let probe = &inside[..probe_end];
    let head = probe.find("<blockquote").map_or(probe, |b| &probe[..b]);
    let lower = head.to_lowercase();
    FORWARD_MARKERS.iter().any(|m| lower.contains(m))
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

struct Tag<'a> {
    start: usize,
    end: usize,
    name: String,
    attrs: &'a str,
    closing: bool,
    self_closing: bool,
}

/// The next tag at or after `from` (comments skipped). `None` at the end or at an unterminated tag.
fn next_tag(html: &str, from: usize) -> Option<Tag<'_>> {
    let mut pos = from;
    loop {
        let start = pos + html[pos..].find('<')?;
        let rest = &html[start..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            pos = start + 4 + comment.find("-->")? + 3;
            continue;
        }
        let after = rest[1..].trim_start_matches('/');
        if after.starts_with('!') || after.starts_with('?') {
            // `<!doctype …>`, `<![CDATA[…]>`, `<?xml …?>`: no element.
            pos = start + rest.find('>')? + 1;
            continue;
        }
        if !after.starts_with(|c: char| c.is_ascii_alphabetic()) {
            // `<` that starts no tag (`a < b`): text. Checked before any search for `>` so that
            // a run of such characters costs one step each.
            pos = start + 1;
            continue;
        }
        let end = start + rest.find('>')? + 1;
        let inner = &html[start + 1..end - 1];
        let closing = inner.starts_with('/');
        let body = inner.trim_start_matches('/');
        let name_len = body
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(body.len());
        return Some(Tag {
            start,
            end,
            name: body[..name_len].to_ascii_lowercase(),
            attrs: &body[name_len..],
            closing,
            self_closing: inner.ends_with('/'),
        });
    }
}

/// The byte just past the element `open` starts (its matching close tag), or the end of `html`.
/// Counts nesting of the same tag name in one forward scan, so deep nesting costs no stack.
fn element_end(html: &str, open: &Tag<'_>) -> usize {
    let mut depth = 1usize;
    let mut pos = open.end;
    while let Some(tag) = next_tag(html, pos) {
        pos = tag.end;
        if tag.name != open.name || tag.self_closing {
            continue;
        }
        if tag.closing {
            depth -= 1;
            if depth == 0 {
                return tag.end;
            }
        } else {
            depth += 1;
        }
    }
    html.len()
}

/// `attrs` (lowercased) has attribute `name` whose value contains `word` as a whole token.
fn has_attr_word(attrs: &str, name: &str, word: &str) -> bool {
    let mut from = 0;
    while let Some(p) = attrs[from..].find(name) {
        let at = from + p;
        from = at + name.len();
        let before_ok = at == 0 || attrs.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = attrs[from..].trim_start();
        let Some(value) = rest.strip_prefix('=') else {
            continue;
        };
        if !before_ok {
            continue;
        }
        let value = value.trim_start();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
            _ => value
                .split(|c: char| c.is_ascii_whitespace() || c == '>')
                .next()
                .unwrap_or(""),
        };
        if value.split_ascii_whitespace().any(|v| v == word) {
            return true;
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Signatures

/// The most trailing lines a signature block is looked for in.
const MAX_SIGNATURE_LINES: usize = 12;

/// Longest line taken for part of a signature block.
const MAX_SIGNATURE_LINE: usize = 90;

/// Closing words a signature block may start with, lowercased, without punctuation.
const SIGN_OFFS: &[&str] = &[
    "thanks",
    "thank you",
    "thanks again",
    "many thanks",
    "thanks and regards",
    "thanks & regards",
    "thx",
    "regards",
    "best regards",
    "kind regards",
    "warm regards",
    "warmest regards",
    "best wishes",
    "best",
    "all the best",
    "cheers",
    "sincerely",
    "yours sincerely",
    "sincerely yours",
    "yours truly",
    "yours",
    "take care",
    "your pal",
    "rgds",
    "br",
    "mit freundlichen grüßen",
    "viele grüße",
    "liebe grüße",
    "gruß",
    "grüße",
    "cordialement",
    "bien cordialement",
    "merci",
    "saludos",
    "un saludo",
    "atentamente",
    "cordiali saluti",
    "saluti",
    "grazie",
    "met vriendelijke groet",
    "groeten",
    "atenciosamente",
    "obrigado",
    "obrigada",
    "pozdrawiam",
    "med vänliga hälsningar",
    "vänliga hälsningar",
    "hälsningar",
    "med venlig hilsen",
    "venlig hilsen",
    "mvh",
    "hilsen",
    "med vennlig hilsen",
    "с уважением",
    "спасибо",
];

/// Sent-from lines mail apps append.
const DEVICE_LINES: &[&str] = &[
    "sent from my ",
    "sent from mail for windows",
    "sent from outlook",
    "sent from yahoo mail",
    "sent with ",
    "get outlook for ",
    "von meinem ",
    "envoyé de mon ",
    "enviado desde mi ",
    "inviato da ",
    "verzonden vanaf mijn ",
    "enviado do meu ",
    "wysłane z ",
    "skickat från min ",
    "sendt fra min ",
    "отправлено с ",
    "发自我的",
    "iphoneから送信",
];

/// Words that open a message, never a signature.
const GREETINGS: &[&str] = &[
    "hello", "hi", "hey", "dear", "ok", "okay", "yes", "no", "sure",
];

/// Splits a trailing signature off `text`: `(text without it, signature)`. Conservative: a
/// `-- ` delimiter, a sent-from line, or a short trailing block anchored on a sign-off followed
/// by a name, or on the sender's name.
pub fn split_signature(text: &str, sender: &str) -> (String, Option<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let names = sender_names(sender);
    let start = delimiter_start(&lines)
        .or_else(|| block_start(&lines, &names))
        .or_else(|| device_start(&lines));
    match start {
        // A signature is below something: a body that is all signature-like is the body.
        Some(s) if lines[..s].iter().any(|l| !l.trim().is_empty()) => {
            let sig = tidy(&lines[s..]);
            let body = tidy(&lines[..s]);
            if sig.is_empty() {
                (body, None)
            } else {
                (body, Some(sig))
            }
        }
        _ => (tidy(&lines), None),
    }
}

/// The indices of the last `MAX_SIGNATURE_LINES` non-blank lines, first to last.
fn trailing(lines: &[&str]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..lines.len())
        .rev()
        .filter(|&i| !lines[i].trim().is_empty())
        .take(MAX_SIGNATURE_LINES)
        .collect();
    idx.reverse();
    idx
}

/// The last `-- ` (RFC 3676) delimiter among the trailing lines.
fn delimiter_start(lines: &[&str]) -> Option<usize> {
    let tail_from = trailing(lines).first().copied()?;
    (tail_from..lines.len())
        .rev()
        .find(|&i| lines[i] == "-- " || lines[i] == "--")
}

/// A sent-from line at the end, with a dash rule right above it if any.
fn device_start(lines: &[&str]) -> Option<usize> {
    let tail = trailing(lines);
    let &last = tail.last()?;
    let lower = lines[last].trim().to_lowercase();
    if !DEVICE_LINES.iter().any(|d| lower.starts_with(d)) {
        return None;
    }
    match tail.len().checked_sub(2).map(|p| tail[p]) {
        Some(prev) if is_rule(lines[prev]) => Some(prev),
        _ => Some(last),
    }
}

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.len() >= 2 && t.bytes().all(|b| matches!(b, b'-' | b'_' | b'=' | b'*'))
}

/// A trailing block of short lines opening with a sign-off and a name, or with a name.
fn block_start(lines: &[&str], names: &Names) -> Option<usize> {
    // The candidate block: trailing non-blank lines up to the first that reads as prose.
    let mut block: Vec<usize> = Vec::new();
    for &i in trailing(lines).iter().rev() {
        if !signature_like(lines[i]) {
            break;
        }
        block.push(i);
    }
    block.reverse();
    for (k, &i) in block.iter().enumerate() {
        let line = lines[i].trim();
        let after_blank_or_signoff = i == 0
            || lines[i - 1].trim().is_empty()
            || (k > 0 && sign_off(lines[block[k - 1]].trim()) == Some(""));
        let signoff = sign_off(line);
        let anchored = match signoff {
            // "Thanks, Ben" / "Regards, Bert Meyers"
            Some(rest) if !rest.is_empty() => names.signs(rest) || is_name(rest),
            // "Thanks," then a name below.
            Some(_) => block.get(k + 1).is_some_and(|&j| {
                let next = lines[j].trim();
                names.matches_start(next) || is_name(next)
            }),
            // A name of someone else is only taken alone on its line below a gap: two or three
            // capitalised words there are as often a heading.
            None => {
                names.matches_start(line)
                    || (after_blank_or_signoff && is_name(line) && name_words(line) == 1)
                    || (after_blank_or_signoff && is_name(line) && titled_below(lines, &block[k..]))
            }
        };
        if anchored {
            // A rule right above the block belongs to it.
            return Some(match block.get(k.wrapping_sub(1)) {
                Some(&r) if is_rule(lines[r]) => r,
                _ => match (0..i).rev().find(|&j| !lines[j].trim().is_empty()) {
                    Some(r) if is_rule(lines[r]) && i - r <= 2 => r,
                    _ => i,
                },
            });
        }
    }
    None
}

/// Words of job titles, which mark the line below a name as a signature's.
const TITLE_WORDS: &[&str] = &[
    "manager",
    "director",
    "president",
    "vp",
    "analyst",
    "engineer",
    "specialist",
    "coordinator",
    "assistant",
    "officer",
    "ceo",
    "cto",
    "cfo",
    "coo",
    "founder",
    "partner",
    "consultant",
    "associate",
    "counsel",
    "attorney",
    "head",
    "lead",
    "supervisor",
    "recruiter",
];

/// `block[0]` (a name) has lines below it, and they hold a job title or contact details: the
/// shape of a signature, where a bare capitalised line would be as often a heading.
fn titled_below(lines: &[&str], block: &[usize]) -> bool {
    block.len() >= 2
        && block[1..].iter().any(|&j| {
            let t = lines[j].trim();
            let lower = t.to_lowercase();
            let digits = t.chars().filter(char::is_ascii_digit).count();
            digits >= 7
                || t.contains('@')
                || lower.contains("http")
                || lower.contains("www.")
                || lower
                    .split(|c: char| !c.is_alphabetic())
                    .next()
                    .is_some_and(|w| TITLE_WORDS.contains(&w))
        })
}

/// A line short enough and unlike prose enough to be part of a signature block.
fn signature_like(line: &str) -> bool {
    let t = line.trim();
    if t.chars().count() > MAX_SIGNATURE_LINE {
        return false;
    }
    let lower = t.to_lowercase();
    if lower.starts_with("p.s") || lower.starts_with("ps:") {
        return false;
    }
    let words = t.split_whitespace().count();
    let sentence = (t.ends_with(['.', '?', '!', ':']) && words >= 4) || words > 8;
    !sentence || t.contains(|c: char| c.is_ascii_digit()) && words <= 6
}

/// When `line` starts with a sign-off, what follows it (trimmed of punctuation), else `None`.
fn sign_off(line: &str) -> Option<&str> {
    let lower = line.to_lowercase();
    // The longest phrase wins, so "thanks again" is not read as "thanks" + "again".
    let mut best: Option<usize> = None;
    for s in SIGN_OFFS {
        if let Some(after) = lower.strip_prefix(s) {
            let next = after.chars().next();
            if next.is_none_or(|c| !c.is_alphanumeric()) && best.is_none_or(|b| s.len() > b) {
                best = Some(s.len());
            }
        }
    }
    let len = best?;
    // Lowercasing can change byte lengths; map back through the character count.
    let chars = lower[..len].chars().count();
    let cut = line
        .char_indices()
        .nth(chars)
        .map_or(line.len(), |(b, _)| b);
    let rest = line[cut..]
        .trim_start_matches(|c: char| matches!(c, ',' | '.' | '!' | '-' | ';') || c.is_whitespace())
        .trim_end();
    // "Thanks for checking!" is prose, not a sign-off.
    (rest.is_empty() || rest.chars().next().is_some_and(char::is_uppercase)).then_some(rest)
}

fn name_words(line: &str) -> usize {
    line.split_whitespace().count()
}

/// One to three capitalised words (initials, hyphens and apostrophes allowed), not a greeting.
fn is_name(text: &str) -> bool {
    let t = text.trim().trim_end_matches(['.', ',']);
    let words: Vec<&str> = t.split_whitespace().collect();
    if words.is_empty() || words.len() > 3 {
        return false;
    }
    let lower = t.to_lowercase();
    if GREETINGS.contains(&lower.as_str()) || sign_off(t).is_some() {
        return false;
    }
    let initial = |w: &str| {
        let mut c = w.chars();
        c.next().is_some_and(char::is_uppercase) && c.as_str() == "."
    };
    let word = |w: &str| {
        w.chars().next().is_some_and(char::is_uppercase)
            && w.chars()
                .all(|c| c.is_alphabetic() || matches!(c, '.' | '-' | '\''))
            && w.chars().skip(1).any(char::is_lowercase)
    };
    words.iter().all(|w| initial(w) || word(w)) && words.iter().any(|w| word(w))
}

/// The sender's name parts and initials, lowercased, from a From header in any common form.
struct Names {
    parts: Vec<String>,
    initials: Option<String>,
}

fn sender_names(sender: &str) -> Names {
    // Drop `<address>` and `[mailto:…]`, then keep the local part of a bare address.
    let mut plain = String::new();
    let mut depth = 0usize;
    for c in sender.chars() {
        match c {
            '<' | '[' => depth += 1,
            '>' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = plain.split_whitespace().collect();
    let split = |w: &str| -> Vec<String> {
        w.split(|c: char| !c.is_alphabetic())
            .filter(|p| p.chars().count() >= 2)
            .map(str::to_lowercase)
            .collect()
    };
    // Names from the display name, and from the local part of a bare address.
    let display: Vec<String> = words
        .iter()
        .filter(|w| !w.contains('@'))
        .flat_map(|w| split(w))
        .collect();
    let parts: Vec<String> = words
        .iter()
        .flat_map(|w| split(w.split('@').next().unwrap_or("")))
        .collect();
    // Initials of first and last name; "Last, First" is the common corporate order.
    let initials = match (display.first(), display.last()) {
        (Some(a), Some(b)) if display.len() >= 2 => {
            let (first, last) = if plain.contains(',') { (b, a) } else { (a, b) };
            first
                .chars()
                .next()
                .zip(last.chars().next())
                .map(|(f, l)| format!("{f}{l}"))
        }
        _ => None,
    };
    Names { parts, initials }
}

impl Names {
    /// The first word of `line` is one of the sender's names or their initials.
    fn matches_start(&self, line: &str) -> bool {
        let t = line.trim();
        let Some(first) = t.split_whitespace().next() else {
            return false;
        };
        let first_word = first
            .trim_end_matches(['.', ',', ';', ':', '-'])
            .to_lowercase();
        // The sender's own address opening a contact block.
        let address = first.split_once('@').is_some_and(|(local, _)| {
            local
                .split(|c: char| !c.is_alphabetic())
                .any(|w| self.parts.contains(&w.to_lowercase()))
        });
        if address {
            return true;
        }
        let capitalised = t.starts_with(char::is_uppercase);
        if !capitalised || t.split_whitespace().count() > 8 {
            return false;
        }
        // Initials alone on a line ("PL", "BT") are as often a short note's last word; with a
        // sign-off before them or a number after them they sign.
        let initials = self.initials.as_deref() == Some(first_word.as_str())
            && t.len() > first.len()
            && t.contains(|c: char| c.is_ascii_digit());
        let first_name = first_word
            .split(|c: char| !c.is_alphabetic())
            .next()
            .is_some_and(|w| {
                first.chars().all(|c| c.is_alphabetic() || c == '.')
                    && self.parts.iter().any(|p| p == w)
            });
        initials || first_name || self.names_a_line(t)
    }

    /// `t` is nothing but a few name-like words, one of them the sender's ("Bert Meyers" from
    /// "Meyers", "BERT MEYERS").
    fn names_a_line(&self, t: &str) -> bool {
        let words: Vec<&str> = t.split_whitespace().collect();
        (1..=4).contains(&words.len())
            && words.iter().all(|w| {
                w.chars()
                    .all(|c| c.is_alphabetic() || matches!(c, '.' | '-' | '\'' | ','))
            })
            && words.iter().any(|w| {
                let w = w.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase();
                self.parts.contains(&w)
            })
    }

    /// `rest` (what follows a sign-off on its line) is the sender's name or initials.
    fn signs(&self, rest: &str) -> bool {
        let word = rest.trim_end_matches(['.', ',']).to_lowercase();
        self.initials.as_deref() == Some(word.as_str()) || self.matches_start(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotes(text: &str) -> (String, Method) {
        strip_quotes(text, false)
    }

    fn text_reply(text: &str) -> Reply {
        reply(Some(text), None, Context::default()).expect("a body")
    }

    /// The new text and the method, for a reply written above `quote`.
    fn above(quote: &str) -> (String, Method) {
        quotes(&format!(
            "Sounds good.\n\n{quote}\n> Earlier text\n> more\n"
        ))
    }

    #[test]
    fn attributions_in_every_language() {
        let cases = [
            (
                "en",
                "On Mon, Apr 2, 2012 at 6:26 PM, Bob <bob@example.com> wrote:",
            ),
            (
                "de",
                "Am 02.04.2012 um 18:26 schrieb Bob <bob@example.com>:",
            ),
            (
                "fr",
                "Le 2 avr. 2012 à 18:26, Bob <bob@example.com> a écrit :",
            ),
            (
                "es",
                "El 2 abr. 2012, a las 18:26, Bob <bob@example.com> escribió:",
            ),
            (
                "it",
                "Il giorno 2 apr 2012, alle ore 18:26, Bob <bob@example.com> ha scritto:",
            ),
            (
                "nl",
                "Op 2 apr. 2012 om 18:26 schreef Bob <bob@example.com>:",
            ),
            (
                "nl2",
                "Op 2 apr. 2012 18:26 heeft Bob <bob@example.com> het volgende geschreven:",
            ),
            (
                "pt",
                "Em 2 de abr. de 2012 às 18:26, Bob <bob@example.com> escreveu:",
            ),
            (
                "pl",
                "W dniu 2.04.2012 o 18:26 Bob <bob@example.com> pisze:",
            ),
            ("pl2", "Dnia 2.04.2012 Bob <bob@example.com> napisał(a):"),
            (
                "sv",
                "Den 2 apr. 2012 kl. 18:26 skrev Bob <bob@example.com>:",
            ),
            (
                "da",
                "Den 2. apr. 2012 kl. 18.26 skrev Bob <bob@example.com>:",
            ),
            (
                "no",
                "man. 2. apr. 2012 kl. 18:26 skrev Bob <bob@example.com>:",
            ),
            (
                "ru",
                "2 апреля 2012 г., 18:26 пользователь Bob <bob@example.com> написал:",
            ),
            (
                "ru2",
                "2 апреля 2012 г., в 18:26, Bob <bob@example.com> пишет:",
            ),
            (
                "zh",
                "在 2012年4月2日 下午6:26，Bob <bob@example.com> 写道：",
            ),
            (
                "ja",
                "2012年4月2日(月) 18:26 Bob <bob@example.com>のメッセージ:",
            ),
            ("ja2", "Bobさんは書きました:"),
        ];
        for (lang, attribution) in cases {
            let (text, method) = above(attribution);
            assert_eq!(text, "Sounds good.", "{lang}");
            assert_eq!(method, Method::Attribution, "{lang}");
        }
    }

    #[test]
    fn attribution_without_a_quote_prefix_cuts_everything_below() {
        let (text, method) = quotes(
            "Yes\n\nOn Tue, Jan 14, 2025 at 9:00 AM Bob <b@x.com>\nwrote:\n\nThe old text\n",
        );
        assert_eq!((text.as_str(), method), ("Yes", Method::Attribution));
    }

    #[test]
    fn prose_that_says_wrote_is_kept() {
        let t = "He wrote:\nthat it was fine.\nShe writes: novels";
        assert_eq!(quotes(t), (t.to_string(), Method::None));
    }

    #[test]
    fn separators_in_every_language() {
        for sep in [
            "-----Original Message-----",
            "----- Original Message -----",
            "-----Ursprüngliche Nachricht-----",
            "-----Message d'origine-----",
            "-----Mensaje original-----",
            "-----Messaggio originale-----",
            "-----Oorspronkelijk bericht-----",
            "-----Mensagem original-----",
            "-----Wiadomość oryginalna-----",
            "-----Ursprungligt meddelande-----",
            "-----Oprindelig meddelelse-----",
            "-----Opprinnelig melding-----",
            "-----Исходное сообщение-----",
            "------------------ 原始邮件 ------------------",
            "-----元のメッセージ-----",
        ] {
            let (text, method) = quotes(&format!("Fine.\n\n{sep}\nFrom: a\nold\n"));
            assert_eq!(
                (text.as_str(), method),
                ("Fine.", Method::Separator),
                "{sep}"
            );
        }
    }

    #[test]
    fn outlook_header_blocks_in_several_languages() {
        for block in [
            "From: Bob [mailto:b@x.com]\nSent: Monday, April 2, 2012 5:44 PM\nTo: Me\nSubject: Test",
            "________________________________\nFrom: Bob <b@x.com>\nSent: Monday\nTo: Me\nSubject: Re",
            "*From:* Bob <b@x.com>\n*Sent:* Monday\n*To:* Me\n*Subject:* Test",
            "Von: Bob <b@x.com>\nGesendet: Montag, 2. April 2012 17:44\nAn: Ich\nBetreff: Test",
            "De : Bob <b@x.com>\nEnvoyé : lundi 2 avril 2012 17:44\nÀ : Moi\nObjet : Test",
            "De: Bob <b@x.com>\nEnviado: lunes\nPara: Yo\nAsunto: Test",
            "Da: Bob <b@x.com>\nInviato: lunedì\nA: Io\nOggetto: Test",
            "Van: Bob <b@x.com>\nVerzonden: maandag\nAan: Ik\nOnderwerp: Test",
            "Från: Bob <b@x.com>\nSkickat: måndag\nTill: Jag\nÄmne: Test",
            "Od: Bob <b@x.com>\nWysłano: poniedziałek\nDo: Ja\nTemat: Test",
            "От: Bob <b@x.com>\nОтправлено: понедельник\nКому: Я\nТема: Test",
            "发件人: Bob <b@x.com>\n发送时间: 2012年4月2日\n收件人: 我\n主题: Test",
            "差出人: Bob <b@x.com>\n送信日時: 2012年4月2日\n宛先: 私\n件名: Test",
        ] {
            let (text, method) = quotes(&format!("Fine.\n\n{block}\n\nold text\n"));
            assert_eq!(
                (text.as_str(), method),
                ("Fine.", Method::Separator),
                "{block}"
            );
        }
    }

    #[test]
    fn a_lone_from_line_is_not_a_header_block() {
        let t = "From: the team\nWe shipped it.";
        assert_eq!(quotes(t).1, Method::None);
    }

    #[test]
    fn forwarded_messages_are_kept() {
        let t = "See below.\n\n---------- Forwarded message ---------\nFrom: Bob <b@x.com>\n\
                 Date: Mon, Apr 2, 2012\nSubject: Test\nTo: Me\n\nThe forwarded text";
        assert_eq!(quotes(t), (t.to_string(), Method::None));
        let apple = "FYI\n\nBegin forwarded message:\n\n> From: Bob\n> Subject: Hi\n>\n> Body";
        assert_eq!(quotes(apple).0, apple);
    }

    #[test]
    fn a_forward_inside_the_quote_is_quoted() {
        let t = "Oui.\n\nLe lun. 13 janv. 2025 à 10:00, Support <s@x.com> a\nécrit :\n\n> Quand ?\n>\n\
                 > ---------- Forwarded message ---------\n> De : Entrepôt";
        assert_eq!(quotes(t), ("Oui.".to_string(), Method::Attribution));
    }

    #[test]
    fn under_a_forward_subject_the_header_block_is_kept() {
        let body = "FYI\n\n________________________________\nFrom: Bob <b@x.com>\nSent: Monday\n\
                    To: Me\nSubject: Numbers\n\nThe numbers";
        let cx = |subject| Context {
            sender: "",
            subject,
        };
        for subject in [
            "FW: Numbers",
            "Fwd: Re: Numbers",
            "WG: Zahlen",
            "TR : Chiffres",
        ] {
            let r = reply(Some(body), None, cx(subject)).expect("a body");
            assert_eq!(
                (r.text.as_str(), r.method),
                (body, Method::None),
                "{subject}"
            );
        }
        let r = reply(Some(body), None, cx("Re: FW: Numbers")).expect("a body");
        assert_eq!((r.text.as_str(), r.method), ("FYI", Method::Separator));
        let html =
            r#"<div>FYI</div><div id="divRplyFwdMsg"><b>From:</b> Bob</div><div>The numbers</div>"#;
        let r = reply(None, Some(html), cx("FW: Numbers")).expect("a body");
        assert!(r.text.contains("The numbers"), "{r:?}");
    }

    #[test]
    fn interleaved_answers_are_kept() {
        let t = "On Mon, 2 Apr 2012, Bob <b@x.com> wrote:\n> Can you come?\nYes.\n\n\
                 > At what time?\nNine.\n> Bye\n";
        assert_eq!(
            quotes(t),
            ("Yes.\n\nNine.".to_string(), Method::Attribution)
        );
    }

    #[test]
    fn quote_prefix_alone() {
        assert_eq!(
            quotes("Agreed\n> old\n>> older"),
            ("Agreed".to_string(), Method::QuotePrefix)
        );
    }

    #[test]
    fn html_quotes_of_each_client_are_removed() {
        let cases = [
            (
                "gmail",
                r#"<div dir="ltr">New text</div><br><div class="gmail_quote"><div class="gmail_attr">On Mon, Bob wrote:<br></div><blockquote class="gmail_quote">old</blockquote></div>"#,
            ),
            (
                "outlook",
                r#"<div>New text</div><hr style="x"><div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Bob</div><div>old</div>"#,
            ),
            (
                "outlook-web",
                r#"<div>New text</div><div id="appendonsend"></div><hr><div>From: Bob</div><div>old</div>"#,
            ),
            (
                "apple",
                r#"<div>New text<br><div><br><blockquote type="cite"><div>On 2 Apr, Bob wrote:</div><div>old</div></blockquote></div></div>"#,
            ),
            (
                "yahoo",
                r#"<div>New text</div><div class="yahoo_quoted" id="y"><div>On Monday, Bob wrote:</div><div>old</div></div>"#,
            ),
            (
                "thunderbird",
                r#"<p>New text</p><div class="moz-cite-prefix">On 02/04/2012 Bob wrote:<br></div><blockquote type="cite" cite="mid:x">old</blockquote>"#,
            ),
            ("generic", "<p>New text</p><blockquote>old</blockquote>"),
        ];
        for (client, html) in cases {
            let r =
                reply(Some("New text\n\n> old"), Some(html), Context::default()).expect("a body");
            assert_eq!(
                (r.text.as_str(), r.method),
                ("New text", Method::HtmlQuote),
                "{client}"
            );
        }
    }

    #[test]
    fn html_attribution_left_outside_the_quote_is_cut() {
        let html = r#"<div>New text</div><div>On 2 Apr 2012, at 16:19, Bob wrote:</div><blockquote>old</blockquote>"#;
        let r = reply(None, Some(html), Context::default()).expect("a body");
        assert_eq!(r.text, "New text");
    }

    #[test]
    fn gmail_forward_in_a_quote_container_is_kept() {
        let html = r#"<div>FYI</div><div class="gmail_quote"><div class="gmail_attr">---------- Forwarded message ---------<br>From: Bob</div><div>the forwarded text</div></div>"#;
        let r = reply(None, Some(html), Context::default()).expect("a body");
        assert_eq!(r.method, Method::None);
        assert!(r.text.contains("the forwarded text"), "{}", r.text);
    }

    #[test]
    fn signature_after_the_delimiter() {
        let r = text_reply("Hello\n\n-- \nBob Example\nACME\n\n> quoted");
        assert_eq!(r.text, "Hello");
        assert_eq!(r.signature.as_deref(), Some("--\nBob Example\nACME"));
        assert_eq!(r.unquoted(), "Hello\n\n--\nBob Example\nACME");
    }

    #[test]
    fn sent_from_lines_are_signatures() {
        let r = text_reply(
            "Hello\n\nSent from my iPhone\n\nOn Apr 3, 2012, at 4:19 PM, bob wrote:\n> Hi",
        );
        assert_eq!(
            (r.text.as_str(), r.signature.as_deref()),
            ("Hello", Some("Sent from my iPhone"))
        );
        assert_eq!(r.method, Method::Attribution);
    }

    #[test]
    fn sign_off_with_name_and_contact_lines() {
        let (text, sig) = split_signature(
            "Please revise and fax.\n\nThanks.\n\nJim Griffin\nManager, Gas Marketing\nPhone:  406-497-2806",
            "Griffin, James P",
        );
        assert_eq!(text, "Please revise and fax.");
        assert_eq!(
            sig.as_deref(),
            Some("Thanks.\n\nJim Griffin\nManager, Gas Marketing\nPhone:  406-497-2806")
        );
    }

    #[test]
    fn the_senders_name_alone_is_a_signature() {
        let (text, sig) = split_signature("Call me about the deal.\nFrank", "Vickers, Frank");
        assert_eq!(
            (text.as_str(), sig.as_deref()),
            ("Call me about the deal.", Some("Frank"))
        );
        let (_, sig) = split_signature("We cancel today.\n\nThanks. BT", "Barry Tycholiz");
        assert_eq!(sig.as_deref(), Some("Thanks. BT"));
    }

    #[test]
    fn names_initials_titles_and_rules() {
        let cases = [
            ("Call me.\n\nBert Meyers", "Meyers", Some("Bert Meyers")),
            (
                "Call me.\n\nREGARDS,\n\nBERT MEYERS",
                "Meyers",
                Some("REGARDS,\n\nBERT MEYERS"),
            ),
            (
                "Call me.\n\nBT   3-1587.",
                "Barry Tycholiz",
                Some("BT   3-1587."),
            ),
            ("Call me.\n\nBT", "Barry Tycholiz", None),
            (
                "Details:\n\nSC_ID: ECT\nMKT_TYPE: 2",
                "Schedule Crawler",
                None,
            ),
            (
                "Call us.\n\nStella Yu\nManager - Rate Systems",
                "CustomerNotices",
                Some("Stella Yu\nManager - Rate Systems"),
            ),
            (
                "The list:\n\nData Copy\nCertification Document",
                "Ops",
                None,
            ),
            (
                "Thank you.\n\n______________\nGary Hewitt\ntel: 202-715-7098",
                "Hewitt, Gary",
                Some("______________\nGary Hewitt\ntel: 202-715-7098"),
            ),
            (
                "Talk soon.\n\nleslie.ferron-jones@neg.pge.com\n503-833-4350",
                "Ferron-Jones Leslie",
                Some("leslie.ferron-jones@neg.pge.com\n503-833-4350"),
            ),
        ];
        for (body, sender, want) in cases {
            assert_eq!(split_signature(body, sender).1.as_deref(), want, "{body}");
        }
    }

    #[test]
    fn endings_that_are_not_signatures() {
        for (body, sender) in [
            ("Done, as you asked.\n\nThanks", "Bob"),
            (
                "Please set me up for Thursday.\n\nTHANK YOU!",
                "Andrea Ring",
            ),
            ("Cara's new number is\n\n503-810-1105", "Semperger"),
            ("Hello", ""),
            ("The list:\n\nCertification Document", "David Steiner"),
            (
                "Thanks for checking the numbers.\n\nThanks for your help!",
                "",
            ),
        ] {
            let (text, sig) = split_signature(body, sender);
            assert_eq!((text.as_str(), sig), (body, None), "{body}");
        }
    }

    #[test]
    fn sender_names_come_from_any_from_form() {
        let n = sender_names("\"Cook  Diane H.\" <Diane.H.Cook@ENRON.com>");
        assert!(n.parts.contains(&"diane".to_string()) && n.parts.contains(&"cook".to_string()));
        assert_eq!(
            sender_names("Tycholiz, Barry").initials.as_deref(),
            Some("bt")
        );
        assert_eq!(
            sender_names("Kim.S.Theriot@ENRON.com").parts,
            vec!["kim".to_string(), "theriot".to_string()]
        );
    }

    #[test]
    fn no_body_no_reply() {
        assert_eq!(reply(None, None, Context::default()), None);
        assert_eq!(text_reply("Just a note").method, Method::None);
    }

    // Hostile input: each would take minutes if a step were quadratic in lines or bytes, and would
    // overflow the stack if nesting were followed by recursion. They assert the results too.

    #[test]
    fn a_hundred_thousand_quoted_lines() {
        let body = "Top\n".to_string() + &"> quoted line\n".repeat(100_000);
        let r = text_reply(&body);
        assert_eq!((r.text.as_str(), r.method), ("Top", Method::QuotePrefix));
    }

    #[test]
    fn a_hundred_thousand_attribution_lookalikes() {
        let body = "On 1 Jan Bob wrote:\n>\n".repeat(100_000) + "end";
        let r = text_reply(&body);
        assert_eq!((r.text.as_str(), r.method), ("end", Method::Attribution));
    }

    #[test]
    fn a_megabyte_on_one_line() {
        let line = "word ".repeat(200_000) + ":";
        let r = text_reply(&format!("{line}\nFrom: x\n{line}\n"));
        assert_eq!(r.method, Method::None);
        assert_eq!(r.text.len(), 2 * line.len() + "\nFrom: x\n".len());
    }

    #[test]
    fn ten_thousand_nested_blockquotes() {
        let html = format!(
            "<p>new</p>{}old{}<p>after</p>",
            "<blockquote type=\"cite\">".repeat(10_000),
            "</blockquote>".repeat(10_000)
        );
        let r = reply(None, Some(&html), Context::default()).expect("a body");
        assert_eq!(
            (r.text.as_str(), r.method),
            ("new\n\nafter", Method::HtmlQuote)
        );
        let unclosed = "<p>new</p>".to_string() + &"<blockquote><div>".repeat(10_000);
        assert_eq!(
            reply(None, Some(&unclosed), Context::default())
                .map(|r| r.text)
                .as_deref(),
            Some("new")
        );
    }

    #[test]
    fn a_megabyte_of_angle_brackets() {
        let html = "<".repeat(1 << 20);
        let r = reply(None, Some(&html), Context::default()).expect("a body");
        assert_eq!(r.method, Method::None);
    }
}
