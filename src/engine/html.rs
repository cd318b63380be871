//! Telegram HTML helpers: escaping, sanitising untrusted HTML-ish text, measuring, plain-text rendering and splitting.
//!
//! Every text the bot sends uses `parse_mode=HTML`, whose parser is strict: only a handful of
//! tags and entities are accepted, and anything else makes the whole request fail. The functions
//! here turn arbitrary text into markup that parser accepts and keep it within Telegram's limits.
//!
//! All functions share one small private tokenizer (`Lexer`) that yields text runs, character
//! references, syntactically valid tags, and stray `<` / `&` characters.

/// Tags Telegram's HTML parser understands.
const ALLOWED_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// Tags whose entities may neither contain nor be contained in one another
/// (the one exception being `code` directly inside `pre`).
const EXCLUSIVE_TAGS: &[&str] = &["a", "code", "pre", "tg-emoji"];

/// Named entities that are decoded. `amp`, `lt`, `gt` and `quot` are re-emitted as entities.
const NAMED_ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{a0}'),
    ("ensp", '\u{2002}'),
    ("emsp", '\u{2003}'),
    ("thinsp", '\u{2009}'),
    ("ndash", '\u{2013}'),
    ("mdash", '\u{2014}'),
    ("minus", '\u{2212}'),
    ("hellip", '\u{2026}'),
    ("laquo", '\u{ab}'),
    ("raquo", '\u{bb}'),
    ("lsaquo", '\u{2039}'),
    ("rsaquo", '\u{203a}'),
    ("lsquo", '\u{2018}'),
    ("rsquo", '\u{2019}'),
    ("sbquo", '\u{201a}'),
    ("ldquo", '\u{201c}'),
    ("rdquo", '\u{201d}'),
    ("bdquo", '\u{201e}'),
    ("bull", '\u{2022}'),
    ("middot", '\u{b7}'),
    ("copy", '\u{a9}'),
    ("reg", '\u{ae}'),
    ("trade", '\u{2122}'),
    ("deg", '\u{b0}'),
    ("plusmn", '\u{b1}'),
    ("times", '\u{d7}'),
    ("divide", '\u{f7}'),
    ("euro", '\u{20ac}'),
    ("pound", '\u{a3}'),
    ("yen", '\u{a5}'),
    ("cent", '\u{a2}'),
    ("sect", '\u{a7}'),
    ("para", '\u{b6}'),
    ("larr", '\u{2190}'),
    ("uarr", '\u{2191}'),
    ("rarr", '\u{2192}'),
    ("darr", '\u{2193}'),
    ("harr", '\u{2194}'),
];

/// Longest tag (in bytes) the tokenizer tries to recognise; bounds the work per `<`.
const MAX_TAG_LEN: usize = 4096;
/// Longest character reference (in bytes, including `&` and `;`) the tokenizer recognises.
const MAX_ENTITY_LEN: usize = 32;
/// Longest escaped `href` kept; keeps every emitted tag far below [`MAX_TAG_LEN`].
const MAX_HREF_LEN: usize = 2048;
/// Longest `language-xxx` name kept on `<code>`.
const MAX_LANGUAGE_LEN: usize = 64;

const ANSI_BOLD: &str = "\x1b[1m";
const ANSI_RESET: &str = "\x1b[0m";

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// Turns arbitrary, possibly malformed HTML-ish text (AI output, user input, template output)
/// into a string Telegram's HTML parser accepts, keeping allowed tags that are well formed and
/// properly nested, dropping disallowed attributes, and escaping everything else as text.
///
/// Details: `<br>` becomes a newline, `<p>` is dropped and `</p>` ends a paragraph (at most two
/// consecutive newlines), unknown tags are shown as text, stray closing tags of known tags are
/// dropped, a closing tag closes any tags opened inside it, tags left open are closed at the end.
/// Tags Telegram would not accept in their position (anything inside `pre`/`code` except
/// `code` directly in `pre`, links inside links, nested blockquotes, ...) are dropped while their
/// text is kept. Numeric and known named entities are decoded to characters; `&amp;`, `&lt;`,
/// `&gt;` and `&quot;` are kept. Never panics and is idempotent.
pub fn sanitize(input: &str) -> String {
    let mut sanitizer =
        Sanitizer { out: String::with_capacity(input.len() + input.len() / 8 + 8), stack: Vec::new(), has_text: false };
    for token in lex(input) {
        match token {
            Token::Text(text) => sanitizer.push_text(text),
            Token::Entity(ch) => sanitizer.push_char(ch, true),
            Token::Stray(ch) => sanitizer.push_char(ch, false),
            Token::Tag(tag) => sanitizer.handle_tag(&tag),
        }
    }
    sanitizer.finish()
}

/// Counts the visible length of Telegram HTML as Telegram measures it: the text after entity
/// parsing (tags removed, entities decoded), in UTF-16 code units. Used to check the 4096
/// (message) and 1024 (caption) limits.
pub fn visible_utf16_len(html: &str) -> usize {
    lex(html)
        .map(|token| match token {
            Token::Text(text) => text.chars().map(char::len_utf16).sum(),
            Token::Entity(ch) | Token::Stray(ch) => ch.len_utf16(),
            Token::Tag(_) => 0,
        })
        .sum()
}

/// [`visible_utf16_len`] for text that [`sanitize`] produced, in one quick pass: such text has
/// only well-formed tags and the four named entities (numeric ones are already decoded).
pub fn sanitized_utf16_len(html: &str) -> usize {
    let mut length = 0;
    let mut chars = html.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '<' => {
                for c in chars.by_ref() {
                    if c == '>' {
                        break;
                    }
                }
            }
            '&' => {
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                }
                length += 1;
            }
            other => length += other.len_utf16(),
        }
    }
    length
}

/// Plain-text rendering for a terminal: tags removed (but `<b>` content may be wrapped in
/// ANSI bold "\x1b[1m...\x1b[0m" when `ansi` is true; `<a href="X">t</a>` renders as `t (X)`),
/// entities decoded.
///
/// A link whose text already equals its address renders as just the address.
pub fn to_plain_text(html: &str, ansi: bool) -> String {
    let mut out = String::with_capacity(html.len());
    let mut bold_depth = 0usize;
    // Open links: their href (if any) and where their text starts in `out`.
    let mut links: Vec<(Option<String>, usize)> = Vec::new();
    for token in lex(html) {
        match token {
            Token::Text(text) => out.push_str(text),
            Token::Entity(ch) | Token::Stray(ch) => out.push(ch),
            Token::Tag(tag) => match (tag.name.as_str(), tag.kind) {
                ("b" | "strong", TagKind::Open) => {
                    if ansi && bold_depth == 0 {
                        out.push_str(ANSI_BOLD);
                    }
                    bold_depth += 1;
                }
                ("b" | "strong", TagKind::Close) if bold_depth > 0 => {
                    bold_depth -= 1;
                    if ansi && bold_depth == 0 {
                        out.push_str(ANSI_RESET);
                    }
                }
                ("a", TagKind::Open) => links.push((tag.attr("href").map(str::to_owned), out.len())),
                ("a", TagKind::Close) => {
                    if let Some((Some(href), start)) = links.pop() {
                        let text = out.get(start..).unwrap_or_default();
                        if text.trim() != href {
                            out.push_str(" (");
                            out.push_str(&href);
                            out.push(')');
                        }
                    }
                }
                _ => {}
            },
        }
    }
    if ansi && bold_depth > 0 {
        out.push_str(ANSI_RESET);
    }
    out
}

/// Splits Telegram HTML longer than `limit` visible UTF-16 units into chunks each within the
/// limit, preferring paragraph boundaries ("\n\n"), then line boundaries, then spaces, then a
/// hard cut at a char boundary. Every chunk must be valid Telegram HTML on its own: tags open
/// at a cut are closed at the end of the chunk and re-opened at the start of the next.
///
/// The input is passed through [`sanitize`] first. Whitespace at cut points is dropped and chunks
/// without visible non-whitespace text are skipped. Text that fits is returned as one chunk
/// (possibly empty). A `limit` below 2 cannot be honoured for characters outside the BMP.
pub fn split_for_telegram(html: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let clean = sanitize(html);
    if visible_utf16_len(&clean) <= limit {
        return vec![clean];
    }
    let atoms = atomize(&clean);
    let mut chunks = Vec::new();
    let mut open: Vec<(&str, &str)> = Vec::new();
    let mut start = 0;
    while start < atoms.len() {
        let fit_end = greedy_end(&atoms, start, limit);
        let cut = if fit_end >= atoms.len() { atoms.len() } else { choose_cut(&atoms, start, fit_end) };
        let piece = atoms.get(start..cut).unwrap_or_default();
        let chunk = render_chunk(piece, &mut open);
        if piece.iter().any(Atom::is_content) {
            chunks.push(chunk);
        }
        start = skip_gap(&atoms, cut, &mut open);
    }
    chunks
}

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

/// One lexical piece of HTML-ish input.
enum Token<'a> {
    /// A run of text without `<` or `&`.
    Text(&'a str),
    /// A well-formed, supported character reference, decoded.
    Entity(char),
    /// A syntactically valid tag (allowed or not).
    Tag(Tag<'a>),
    /// A `<` or `&` that starts neither a tag nor a character reference.
    Stray(char),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Open,
    Close,
    SelfClosing,
}

/// A parsed tag: lowercase name, attributes with entity-decoded values, and its source text.
struct Tag<'a> {
    raw: &'a str,
    name: String,
    kind: TagKind,
    attrs: Vec<Attr>,
}

/// One attribute; `value` is `None` for a boolean attribute such as `expandable`.
struct Attr {
    name: String,
    value: Option<String>,
}

impl Tag<'_> {
    /// The value of the first attribute called `name`, if it has one.
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|attr| attr.name == name).and_then(|attr| attr.value.as_deref())
    }

    fn has_attr(&self, name: &str) -> bool {
        self.attrs.iter().any(|attr| attr.name == name)
    }
}

/// Iterator over the [`Token`]s of a string.
struct Lexer<'a> {
    rest: &'a str,
}

fn lex(input: &str) -> Lexer<'_> {
    Lexer { rest: input }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let rest = self.rest;
        let (token, len) = match rest.as_bytes().first()? {
            b'<' => match parse_tag(rest) {
                Some(tag) => {
                    let len = tag.raw.len();
                    (Token::Tag(tag), len)
                }
                None => (Token::Stray('<'), 1),
            },
            b'&' => match parse_entity(rest) {
                Some((ch, len)) => (Token::Entity(ch), len),
                None => (Token::Stray('&'), 1),
            },
            _ => {
                let len = rest.find(['<', '&']).unwrap_or(rest.len());
                (Token::Text(rest.get(..len).unwrap_or(rest)), len)
            }
        };
        self.rest = rest.get(len..).unwrap_or_default();
        Some(token)
    }
}

fn is_html_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

fn is_attr_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_attr_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-')
}

fn is_unquoted_value_char(b: u8) -> bool {
    !is_html_space(b) && !matches!(b, b'"' | b'\'' | b'=' | b'<' | b'>' | b'`')
}

/// Advances `i` over bytes matching `pred`.
fn scan_while(bytes: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while bytes.get(i).is_some_and(|&b| pred(b)) {
        i += 1;
    }
    i
}

/// Parses a tag at the start of `s` (which begins with `<`):
/// `<name attr="v" attr='v' attr=v attr>`, `<name/>` or `</name>`.
fn parse_tag(s: &str) -> Option<Tag<'_>> {
    let bytes = s.as_bytes().get(..MAX_TAG_LEN).unwrap_or(s.as_bytes());
    if bytes.first() != Some(&b'<') {
        return None;
    }
    let closing = bytes.get(1) == Some(&b'/');
    let name_start = if closing { 2 } else { 1 };
    if !bytes.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let mut i = scan_while(bytes, name_start, |b| b.is_ascii_alphanumeric() || b == b'-');
    let name = s.get(name_start..i)?.to_ascii_lowercase();
    let mut attrs = Vec::new();
    let mut need_space = true;
    let kind = loop {
        let after_space = scan_while(bytes, i, is_html_space);
        let spaced = after_space > i;
        i = after_space;
        match *bytes.get(i)? {
            b'>' => {
                i += 1;
                break if closing { TagKind::Close } else { TagKind::Open };
            }
            b'/' if !closing && bytes.get(i + 1) == Some(&b'>') => {
                i += 2;
                break TagKind::SelfClosing;
            }
            c if !closing && is_attr_name_start(c) && (spaced || !need_space) => {
                let (attr, next, quoted) = parse_attr(s, bytes, i)?;
                attrs.push(attr);
                need_space = !quoted;
                i = next;
            }
            _ => return None,
        }
    };
    Some(Tag { raw: s.get(..i)?, name, kind, attrs })
}

/// Parses one attribute starting at byte `i` of `s`; returns it, the index just after it, and
/// whether its value was quoted.
fn parse_attr(s: &str, bytes: &[u8], i: usize) -> Option<(Attr, usize, bool)> {
    let name_end = scan_while(bytes, i, is_attr_name_char);
    let name = s.get(i..name_end)?.to_ascii_lowercase();
    let eq = scan_while(bytes, name_end, is_html_space);
    if bytes.get(eq) != Some(&b'=') {
        return Some((Attr { name, value: None }, name_end, false));
    }
    let start = scan_while(bytes, eq + 1, is_html_space);
    let first = *bytes.get(start)?;
    let (raw, next, quoted) = if first == b'"' || first == b'\'' {
        let len = bytes.get(start + 1..)?.iter().position(|&b| b == first)?;
        let end = start + 1 + len;
        (s.get(start + 1..end)?, end + 1, true)
    } else {
        let end = scan_while(bytes, start, is_unquoted_value_char);
        if end == start {
            return None;
        }
        (s.get(start..end)?, end, false)
    };
    let value = Some(decode_entities(raw));
    Some((Attr { name, value }, next, quoted))
}

/// Parses a character reference at the start of `s` (which begins with `&`): `&name;`, `&#123;`
/// or `&#x1F600;`. Returns the decoded character and the reference's length in bytes.
fn parse_entity(s: &str) -> Option<(char, usize)> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'&') {
        return None;
    }
    let semi = bytes.iter().take(MAX_ENTITY_LEN).position(|&b| b == b';')?;
    let body = s.get(1..semi)?;
    let ch = match body.strip_prefix('#') {
        Some(number) => {
            let (digits, radix) = match number.strip_prefix(['x', 'X']) {
                Some(hex) => (hex, 16),
                None => (number, 10),
            };
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u32::from_str_radix(digits, radix).ok().and_then(char::from_u32).filter(|&c| c != '\0')?
        }
        None => NAMED_ENTITIES.iter().find(|(name, _)| *name == body).map(|&(_, c)| c)?,
    };
    Some((ch, semi + 1))
}

/// Decodes the character references in an attribute value; a bare `&` stays as it is.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        let (before, tail) = rest.split_at(amp);
        out.push_str(before);
        let (ch, len) = parse_entity(tail).unwrap_or(('&', 1));
        out.push(ch);
        rest = tail.get(len..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Escapes text (cells, attribute values) for Telegram HTML: & < > and " become entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        push_escaped(&mut out, ch, true);
    }
    out
}

/// Appends `ch`, escaping `&`, `<`, `>` and, when `quotes` is set, `"`.
fn push_escaped(out: &mut String, ch: char, quotes: bool) {
    match ch {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' if quotes => out.push_str("&quot;"),
        _ => out.push(ch),
    }
}

fn push_close(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

// ---------------------------------------------------------------------------------------------
// Sanitizer
// ---------------------------------------------------------------------------------------------

/// An element opened while sanitising; `emitted` is false when the tag itself was dropped
/// (its text is kept and its closing tag is dropped too).
struct OpenElement {
    name: String,
    emitted: bool,
}

struct Sanitizer {
    out: String,
    stack: Vec<OpenElement>,
    /// Whether any visible non-whitespace text was written (paragraph breaks need some).
    has_text: bool,
}

impl Sanitizer {
    fn push_text(&mut self, text: &str) {
        let mut rest = text;
        while let Some(at) = rest.find(['&', '<', '>']) {
            self.out.push_str(&rest[..at]);
            push_escaped(&mut self.out, char::from(rest.as_bytes()[at]), false);
            rest = &rest[at + 1..];
        }
        self.out.push_str(rest);
        self.has_text = self.has_text || text.chars().any(|c| !c.is_whitespace());
    }

    fn push_char(&mut self, ch: char, quotes: bool) {
        push_escaped(&mut self.out, ch, quotes);
        self.has_text |= !ch.is_whitespace();
    }

    fn handle_tag(&mut self, tag: &Tag<'_>) {
        match (tag.name.as_str(), tag.kind) {
            ("br", _) => self.out.push('\n'),
            ("p", TagKind::Close) => self.paragraph_break(),
            ("p", _) => {}
            (_, TagKind::Open) if is_allowed(&tag.name) => self.open(tag),
            (name, TagKind::Close) if is_allowed(name) => self.close(name),
            (name, TagKind::SelfClosing) if is_allowed(name) => {}
            _ => self.push_text(tag.raw),
        }
    }

    fn open(&mut self, tag: &Tag<'_>) {
        let rendered = self.render_open(tag);
        if let Some(html) = &rendered {
            self.out.push_str(html);
        }
        self.stack.push(OpenElement { name: tag.name.clone(), emitted: rendered.is_some() });
    }

    /// Closes the innermost open element called `name` and everything opened inside it;
    /// a closing tag without a matching open element is dropped.
    fn close(&mut self, name: &str) {
        if let Some(index) = self.stack.iter().rposition(|element| element.name == name) {
            self.close_from(index);
        }
    }

    fn close_from(&mut self, index: usize) {
        for element in self.stack.drain(index..).rev() {
            if element.emitted {
                push_close(&mut self.out, &element.name);
            }
        }
    }

    /// Ends a paragraph: newlines so that the output ends with (at most) two of them.
    fn paragraph_break(&mut self) {
        if !self.has_text {
            return;
        }
        let trailing = self.out.bytes().rev().take_while(|&b| b == b'\n').take(2).count();
        for _ in trailing..2 {
            self.out.push('\n');
        }
    }

    /// The canonical opening tag to emit for an allowed `tag`, or `None` to drop it.
    fn render_open(&self, tag: &Tag<'_>) -> Option<String> {
        let name = tag.name.as_str();
        let parent = self.stack.iter().rev().find(|element| element.emitted).map(|element| element.name.as_str());
        let inside =
            |names: &[&str]| self.stack.iter().any(|element| element.emitted && names.contains(&element.name.as_str()));
        let code_in_pre = name == "code" && parent == Some("pre");
        if !code_in_pre && (inside(&["code", "pre"]) || (EXCLUSIVE_TAGS.contains(&name) && inside(EXCLUSIVE_TAGS))) {
            return None;
        }
        match name {
            "a" => tag.attr("href").and_then(safe_href).map(|href| format!("<a href=\"{href}\">")),
            "span" => (tag.attr("class").map(str::trim) == Some("tg-spoiler"))
                .then(|| "<span class=\"tg-spoiler\">".to_owned()),
            "code" => Some(match tag.attr("class").and_then(code_language) {
                Some(language) if code_in_pre => format!("<code class=\"language-{language}\">"),
                _ => "<code>".to_owned(),
            }),
            "blockquote" if inside(&["blockquote"]) => None,
            "blockquote" if tag.has_attr("expandable") => Some("<blockquote expandable>".to_owned()),
            "tg-emoji" => tag
                .attr("emoji-id")
                .map(str::trim)
                .filter(|id| (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()))
                .map(|id| format!("<tg-emoji emoji-id=\"{id}\">")),
            _ => Some(format!("<{name}>")),
        }
    }

    fn finish(mut self) -> String {
        self.close_from(0);
        self.out
    }
}

fn is_allowed(name: &str) -> bool {
    ALLOWED_TAGS.contains(&name)
}

/// Returns the escaped `href` if it is a link Telegram accepts (http, https or tg scheme).
fn safe_href(href: &str) -> Option<String> {
    let href = href.trim();
    let has_scheme = ["http://", "https://", "tg://"].iter().any(|scheme| {
        href.len() > scheme.len() && href.get(..scheme.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
    });
    let plain = !href.chars().any(|c| c.is_whitespace() || c.is_control());
    let escaped = escape(href);
    (has_scheme && plain && escaped.len() <= MAX_HREF_LEN).then_some(escaped)
}

/// The language of a `class="language-xxx"` value, if it is a plausible language name.
fn code_language(class: &str) -> Option<&str> {
    class.trim().strip_prefix("language-").filter(|language| {
        (1..=MAX_LANGUAGE_LEN).contains(&language.len())
            && language.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'#' | b'.'))
    })
}

// ---------------------------------------------------------------------------------------------
// Splitter
// ---------------------------------------------------------------------------------------------

/// A visible character or a tag of sanitised HTML: the unit the splitter works with.
enum Atom<'a> {
    Char(char),
    Open { name: String, html: &'a str },
    Close { name: String },
}

impl Atom<'_> {
    fn as_char(&self) -> Option<char> {
        match self {
            Atom::Char(ch) => Some(*ch),
            _ => None,
        }
    }

    fn is_space(&self) -> bool {
        self.as_char().is_some_and(char::is_whitespace)
    }

    /// A visible, non-whitespace character.
    fn is_content(&self) -> bool {
        self.as_char().is_some_and(|ch| !ch.is_whitespace())
    }
}

fn atomize(html: &str) -> Vec<Atom<'_>> {
    let mut atoms = Vec::new();
    for token in lex(html) {
        match token {
            Token::Text(text) => atoms.extend(text.chars().map(Atom::Char)),
            Token::Entity(ch) | Token::Stray(ch) => atoms.push(Atom::Char(ch)),
            Token::Tag(tag) => match tag.kind {
                TagKind::Open => atoms.push(Atom::Open { name: tag.name, html: tag.raw }),
                TagKind::Close => atoms.push(Atom::Close { name: tag.name }),
                TagKind::SelfClosing => {}
            },
        }
    }
    atoms
}

/// The index of the first character after `start` that no longer fits in `limit` UTF-16
/// units (at least one character is always taken), or `atoms.len()` if the rest fits.
fn greedy_end(atoms: &[Atom<'_>], start: usize, limit: usize) -> usize {
    let mut width = 0;
    for (index, atom) in atoms.iter().enumerate().skip(start) {
        if let Some(ch) = atom.as_char() {
            let char_width = ch.len_utf16();
            if width > 0 && width + char_width > limit {
                return index;
            }
            width += char_width;
        }
    }
    atoms.len()
}

fn is_line_break_at(atoms: &[Atom<'_>], index: usize) -> bool {
    atoms.get(index).and_then(Atom::as_char) == Some('\n')
}

/// A newline whose next visible character is also a newline.
fn is_paragraph_break_at(atoms: &[Atom<'_>], index: usize) -> bool {
    is_line_break_at(atoms, index) && atoms.iter().skip(index + 1).find_map(Atom::as_char) == Some('\n')
}

fn is_space_at(atoms: &[Atom<'_>], index: usize) -> bool {
    atoms.get(index).is_some_and(Atom::is_space)
}

/// Picks where the chunk starting at `start` ends; `end` is the first character that does not
/// fit. Cuts at the last paragraph break, else line break, else space, else at `end`.
fn choose_cut(atoms: &[Atom<'_>], start: usize, end: usize) -> usize {
    let Some(first) = (start..end).find(|&i| atoms.get(i).is_some_and(Atom::is_content)) else {
        return end;
    };
    let rules: [fn(&[Atom<'_>], usize) -> bool; 3] = [is_paragraph_break_at, is_line_break_at, is_space_at];
    for rule in rules {
        if let Some(cut) = (first + 1..=end).rfind(|&i| rule(atoms, i)) {
            return trim_back(atoms, first, cut);
        }
    }
    trim_back(atoms, first, end)
}

/// Moves a cut back over trailing whitespace and opening tags, keeping the chunk's first
/// visible character (at index `first`).
fn trim_back(atoms: &[Atom<'_>], first: usize, mut cut: usize) -> usize {
    while cut > first + 1 && atoms.get(cut - 1).is_some_and(|atom| atom.is_space() || matches!(atom, Atom::Open { .. }))
    {
        cut -= 1;
    }
    cut
}

/// Renders one chunk: re-opens the tags in `open`, writes `piece`, then closes whatever is
/// still open. Afterwards `open` holds the tags open at the end of `piece`.
fn render_chunk<'a>(piece: &'a [Atom<'a>], open: &mut Vec<(&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (_, html) in open.iter() {
        out.push_str(html);
    }
    for atom in piece {
        match atom {
            Atom::Char(ch) => push_escaped(&mut out, *ch, false),
            Atom::Open { name, html } => {
                out.push_str(html);
                open.push((name.as_str(), *html));
            }
            Atom::Close { name } => {
                if open.last().is_some_and(|(top, _)| *top == name.as_str()) {
                    open.pop();
                    push_close(&mut out, name);
                }
            }
        }
    }
    for (name, _) in open.iter().rev() {
        push_close(&mut out, name);
    }
    out
}

/// Skips the whitespace and closing tags that follow a cut (the previous chunk already closed
/// those tags) and returns where the next chunk starts.
fn skip_gap<'a>(atoms: &'a [Atom<'a>], mut index: usize, open: &mut Vec<(&'a str, &'a str)>) -> usize {
    while let Some(atom) = atoms.get(index) {
        match atom {
            Atom::Close { name } => {
                if open.last().is_some_and(|(top, _)| *top == name.as_str()) {
                    open.pop();
                }
            }
            atom if atom.is_space() => {}
            _ => break,
        }
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_quick_length_matches_the_full_one_on_sanitized_text() {
        let samples = [
            "<b>Привет</b> 😀 &amp; <a href=\"https://t.me/x?a=1&b=2\">link</a>",
            "a < b & c > d &#x1F600; &nbsp; &bogus; <i>x",
            "<pre><code class=\"language-rust\">fn main() {}</code></pre>\n\n<blockquote expandable>q</blockquote>",
            "",
        ];
        for sample in samples {
            let clean = sanitize(sample);
            assert_eq!(sanitized_utf16_len(&clean), visible_utf16_len(&clean), "{clean}");
        }
    }
    use super::*;

    /// Tags that can neither contain nor be contained in one another (except code in pre).
    const EXCLUSIVE: [&str; 4] = ["a", "code", "pre", "tg-emoji"];

    /// Visible text of `html`: tags dropped, entities decoded.
    fn visible(html: &str) -> String {
        let mut out = String::new();
        for token in lex(html) {
            match token {
                Token::Text(text) => out.push_str(text),
                Token::Entity(ch) | Token::Stray(ch) => out.push(ch),
                Token::Tag(_) => {}
            }
        }
        out
    }

    fn without_spaces(text: &str) -> String {
        text.chars().filter(|c| !c.is_whitespace()).collect()
    }

    /// Strict, independent checker of what Telegram's HTML parser accepts (and of the
    /// canonical attribute form `sanitize` emits).
    fn validate(html: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = html;
        while let Some(ch) = rest.chars().next() {
            match ch {
                '<' => {
                    let end = rest.find('>').ok_or_else(|| format!("unterminated tag in {html:?}"))?;
                    let inner = &rest[1..end];
                    if let Some(name) = inner.strip_prefix('/') {
                        if stack.pop().as_deref() != Some(name) {
                            return Err(format!("mismatched </{name}> in {html:?}"));
                        }
                    } else {
                        let (name, attrs) = inner.split_once(' ').unwrap_or((inner, ""));
                        check_open_tag(name, attrs, &stack).map_err(|e| format!("{e} in {html:?}"))?;
                        stack.push(name.to_owned());
                    }
                    rest = &rest[end + 1..];
                }
                '&' => {
                    let end = rest.find(';').ok_or_else(|| format!("bare & in {html:?}"))?;
                    let body = &rest[1..end];
                    let ok = matches!(body, "lt" | "gt" | "amp" | "quot")
                        || body
                            .strip_prefix("#x")
                            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
                        || body
                            .strip_prefix('#')
                            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
                    if !ok {
                        return Err(format!("bad entity &{body}; in {html:?}"));
                    }
                    rest = &rest[end + 1..];
                }
                '>' => return Err(format!("bare > in {html:?}")),
                _ => rest = &rest[ch.len_utf8()..],
            }
        }
        if stack.is_empty() { Ok(()) } else { Err(format!("unclosed {stack:?} in {html:?}")) }
    }

    fn check_open_tag(name: &str, attrs: &str, stack: &[String]) -> Result<(), String> {
        let quoted = |prefix: &str| -> Option<String> {
            attrs
                .strip_prefix(prefix)
                .and_then(|v| v.strip_suffix('"'))
                .filter(|v| !v.contains(['"', '<', '>']))
                .map(str::to_owned)
        };
        let parent = stack.last().map(String::as_str);
        let attrs_ok = match name {
            "b" | "strong" | "i" | "em" | "u" | "ins" | "s" | "strike" | "del" | "tg-spoiler" | "pre" => {
                attrs.is_empty()
            }
            "span" => attrs == "class=\"tg-spoiler\"",
            "a" => quoted("href=\"").is_some_and(|url| {
                let lower = url.to_ascii_lowercase();
                validate(&url).is_ok() && ["http://", "https://", "tg://"].iter().any(|s| lower.starts_with(s))
            }),
            "code" => {
                attrs.is_empty()
                    || (parent == Some("pre")
                        && quoted("class=\"language-").is_some_and(|l| !l.is_empty() && !l.contains('&')))
            }
            "blockquote" => attrs.is_empty() || attrs == "expandable",
            "tg-emoji" => {
                quoted("emoji-id=\"").is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            }
            _ => return Err(format!("tag <{name}> is not allowed")),
        };
        if !attrs_ok {
            return Err(format!("bad attributes on <{name}>: {attrs:?}"));
        }
        let inside = |names: &[&str]| stack.iter().any(|open| names.contains(&open.as_str()));
        let code_in_pre = name == "code" && parent == Some("pre");
        if !code_in_pre && (inside(&["code", "pre"]) || (EXCLUSIVE.contains(&name) && inside(&EXCLUSIVE))) {
            return Err(format!("<{name}> not allowed inside {stack:?}"));
        }
        if name == "blockquote" && inside(&["blockquote"]) {
            return Err("nested blockquote".to_owned());
        }
        Ok(())
    }

    /// Deterministic xorshift64 generator.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound as u64) as usize
        }
    }

    #[test]
    fn sanitize_escapes_special_characters_in_plain_text() {
        assert_eq!(sanitize("a < b & c > d"), "a &lt; b &amp; c &gt; d");
        assert_eq!(sanitize("Привет 😀"), "Привет 😀");
        assert_eq!(sanitize(""), "");
    }

    #[test]
    fn sanitize_keeps_allowed_tags() {
        assert_eq!(sanitize("<b>x</b>"), "<b>x</b>");
        assert_eq!(sanitize("<B>x</B>"), "<b>x</b>");
        assert_eq!(
            sanitize("<strong>a</strong><em>b</em><ins>c</ins><del>d</del>"),
            "<strong>a</strong><em>b</em><ins>c</ins><del>d</del>"
        );
        assert_eq!(sanitize("<tg-spoiler>x</tg-spoiler>"), "<tg-spoiler>x</tg-spoiler>");
        assert_eq!(sanitize("<span class=\"tg-spoiler\">x</span>"), "<span class=\"tg-spoiler\">x</span>");
        assert_eq!(sanitize("<span style=\"color:red\">x</span>"), "x");
        assert_eq!(sanitize("<blockquote expandable>q</blockquote>"), "<blockquote expandable>q</blockquote>");
        assert_eq!(sanitize("<b class=\"x\">y</b>"), "<b>y</b>");
        assert_eq!(
            sanitize("<tg-emoji emoji-id=\"5368324170671202286\">😀</tg-emoji>"),
            "<tg-emoji emoji-id=\"5368324170671202286\">😀</tg-emoji>"
        );
    }

    #[test]
    fn sanitize_escapes_unknown_tags_and_bare_characters() {
        assert_eq!(sanitize("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(sanitize("a < b & c"), "a &lt; b &amp; c");
        assert_eq!(sanitize("1 > 0"), "1 &gt; 0");
        assert_eq!(sanitize("<!-- note -->"), "&lt;!-- note --&gt;");
        assert_eq!(sanitize("<b"), "&lt;b");
        assert_eq!(sanitize("</b class=\"x\">"), "&lt;/b class=\"x\"&gt;");
        assert_eq!(sanitize("say \"hi\""), "say \"hi\"");
    }

    #[test]
    fn sanitize_repairs_nesting() {
        assert_eq!(sanitize("<b><i>x</b>"), "<b><i>x</i></b>");
        assert_eq!(sanitize("<b><i>x</b>y</i>"), "<b><i>x</i></b>y");
        assert_eq!(sanitize("<b>x"), "<b>x</b>");
        assert_eq!(sanitize("x</i>y"), "xy");
        assert_eq!(sanitize("<b/>x"), "x");
    }

    #[test]
    fn sanitize_filters_links() {
        assert_eq!(sanitize("<a href=\"javascript:alert(1)\">x</a>"), "x");
        assert_eq!(sanitize("<a>x</a>"), "x");
        assert_eq!(sanitize("<a href='https://t.me/x' target=_blank>x</a>"), "<a href=\"https://t.me/x\">x</a>");
        assert_eq!(sanitize("<a href=https://t.me/x>x</a>"), "<a href=\"https://t.me/x\">x</a>");
        assert_eq!(sanitize("<a href=\"tg://user?id=1\">u</a>"), "<a href=\"tg://user?id=1\">u</a>");
        assert_eq!(sanitize("<a href=\"https://x.y/?a=1&b=2\">l</a>"), "<a href=\"https://x.y/?a=1&amp;b=2\">l</a>");
        assert_eq!(sanitize("<a href=\"https://a\"><a href=\"https://b\">x</a></a>"), "<a href=\"https://a\">x</a>");
    }

    #[test]
    fn sanitize_handles_code_blocks() {
        let block = "<pre><code class=\"language-rust\">fn main() {}</code></pre>";
        assert_eq!(sanitize(block), block);
        assert_eq!(sanitize("<code class=\"language-rust\">x</code>"), "<code>x</code>");
        assert_eq!(sanitize("<pre><b>x</b></pre>"), "<pre>x</pre>");
        assert_eq!(sanitize("<code>a <i>b</i></code>"), "<code>a b</code>");
        assert_eq!(sanitize("<code>if a < b && c</code>"), "<code>if a &lt; b &amp;&amp; c</code>");
    }

    #[test]
    fn sanitize_handles_entities() {
        assert_eq!(sanitize("a&nbsp;b"), "a\u{a0}b");
        assert_eq!(
            sanitize("a &mdash; b &hellip; &laquo;q&raquo; &copy;"),
            "a \u{2014} b \u{2026} \u{ab}q\u{bb} \u{a9}"
        );
        assert_eq!(sanitize("&#x1F600;"), "😀");
        assert_eq!(sanitize("&#65;&#x42;"), "AB");
        assert_eq!(sanitize("&#60;b&#62;"), "&lt;b&gt;");
        assert_eq!(sanitize("&bogus;"), "&amp;bogus;");
        assert_eq!(sanitize("&amp &lt;"), "&amp;amp &lt;");
        assert_eq!(sanitize("&lt;&gt;&amp;&quot;"), "&lt;&gt;&amp;&quot;");
        assert_eq!(sanitize("&#0;&#xD800;&#99999999999;"), "&amp;#0;&amp;#xD800;&amp;#99999999999;");
    }

    #[test]
    fn sanitize_keeps_multibyte_text() {
        let text = "Привет, мир 😀👍🏽 日本語";
        assert_eq!(sanitize(text), text);
        assert_eq!(sanitize("<b>Привет</b> 😀"), "<b>Привет</b> 😀");
        assert_eq!(sanitize("<Ж>"), "&lt;Ж&gt;");
    }

    #[test]
    fn sanitize_converts_line_and_paragraph_tags() {
        assert_eq!(sanitize("a<br>b<br/>c<br />d<BR>e"), "a\nb\nc\nd\ne");
        assert_eq!(sanitize("<p>One</p><p>Two</p>"), "One\n\nTwo\n\n");
        assert_eq!(sanitize("<p>One\n</p>\n<p>Two</p>"), "One\n\n\nTwo\n\n");
        assert_eq!(sanitize("<p></p><p>x</p>"), "x\n\n");
        assert_eq!(sanitize("<p class=\"lead\"><b>Hi</b></p>"), "<b>Hi</b>\n\n");
    }

    #[test]
    fn sanitize_is_idempotent_on_nasty_inputs() {
        let inputs = [
            "",
            "<",
            ">",
            "&",
            "<<b>>",
            "<b><i>x</b></i>",
            "</b></i></a>",
            "<a href=\"https://x\"><b>y</a></b>",
            "<a href='javascript:1'><b>y</b></a>",
            "<a href=\"https://x?a=&amp;b=&lt;\">q</a>",
            "<a href=\"https://x\" href=\"ftp://y\">q</a>",
            "&amp;amp;&&#;&#x;&#xZZ;&lt",
            "<pre><code class=\"language-c#\"><b>x</b></code></pre>",
            "<pre><code class=\"language-\">x</code></pre>",
            "<code><pre>x</pre></code>",
            "<blockquote><blockquote>x</blockquote></blockquote>",
            "<p><p></p></p>text</p></p>",
            "<br></br><br/>",
            "<script>x</script><style>y</style>",
            "<a title=\"<b>\">z</a>",
            "<foo title=\"&amp;\">",
            "Привет 😀 <b>Ж</b>&nbsp;😀",
            "<a href=\"https://x\n\">n</a>",
            "<tg-emoji emoji-id=\"12a\">x</tg-emoji>",
            "<span class='tg-spoiler'>s</span>",
            "\n\n\n<p>\n</p>\n",
        ];
        for input in inputs {
            let once = sanitize(input);
            assert_eq!(sanitize(&once), once, "input {input:?}");
            assert!(validate(&once).is_ok(), "{:?}", validate(&once));
        }
    }

    #[test]
    fn visible_length_counts_utf16_units() {
        assert_eq!(visible_utf16_len("😀"), 2);
        assert_eq!(visible_utf16_len("Привет"), 6);
        assert_eq!(visible_utf16_len("<b>Ж</b>&amp;"), 2);
        assert_eq!(visible_utf16_len("&#x1F600;&lt;"), 3);
        assert_eq!(visible_utf16_len("<a href=\"https://very.long/url\">x</a>"), 1);
        assert_eq!(visible_utf16_len(""), 0);
    }

    #[test]
    fn plain_text_rendering() {
        let html = "<b>Hi</b> &amp; <a href=\"https://x.y\">link</a>";
        assert_eq!(to_plain_text(html, false), "Hi & link (https://x.y)");
        assert_eq!(to_plain_text(html, true), "\x1b[1mHi\x1b[0m & link (https://x.y)");
        assert_eq!(to_plain_text("<a href=\"https://x.y\">https://x.y</a>", false), "https://x.y");
        assert_eq!(to_plain_text("<b>a<b>b</b>c</b>", true), "\x1b[1mabc\x1b[0m");
        assert_eq!(to_plain_text("<b>open", true), "\x1b[1mopen\x1b[0m");
        assert_eq!(to_plain_text("<i>Ж</i>&nbsp;&#x1F600;", false), "Ж\u{a0}😀");
    }

    #[test]
    fn split_returns_short_text_unchanged() {
        assert_eq!(split_for_telegram("<b>hi</b>", 10), ["<b>hi</b>"]);
        assert_eq!(split_for_telegram("", 10), [""]);
    }

    #[test]
    fn split_prefers_paragraphs_then_lines_then_spaces() {
        assert_eq!(split_for_telegram("aaa bbb\n\nccc ddd", 12), ["aaa bbb", "ccc ddd"]);
        assert_eq!(split_for_telegram("aaa\nbbb ccc", 9), ["aaa", "bbb ccc"]);
        assert_eq!(split_for_telegram("aaaa bbbb", 6), ["aaaa", "bbbb"]);
        assert_eq!(split_for_telegram("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn split_reopens_tags() {
        assert_eq!(split_for_telegram("<b>aaaa bbbb</b>", 4), ["<b>aaaa</b>", "<b>bbbb</b>"]);
        assert_eq!(
            split_for_telegram("<pre><code class=\"language-rust\">line1\nline2</code></pre>", 6),
            [
                "<pre><code class=\"language-rust\">line1</code></pre>",
                "<pre><code class=\"language-rust\">line2</code></pre>"
            ]
        );
        assert_eq!(
            split_for_telegram("<a href=\"https://x\">one two</a>", 4),
            ["<a href=\"https://x\">one</a>", "<a href=\"https://x\">two</a>"]
        );
    }

    #[test]
    fn split_never_breaks_characters_or_entities() {
        assert_eq!(split_for_telegram("😀😀😀", 3), ["😀", "😀", "😀"]);
        assert_eq!(split_for_telegram("a&amp;b&lt;c", 2), ["a&amp;", "b&lt;", "c"]);
    }

    #[test]
    fn split_keeps_limits_and_text() {
        let mut html = String::new();
        for i in 0..200 {
            html.push_str(&format!("<b>Привет {i}</b> world 😀 &amp; <i>more <u>text</u></i>"));
            html.push_str(if i % 7 == 0 {
                "\n\n"
            } else if i % 3 == 0 {
                "\n"
            } else {
                " "
            });
        }
        for limit in [10, 50, 100, 1024, 4096] {
            let chunks = split_for_telegram(&html, limit);
            assert!(chunks.len() > 1 || limit == 4096 || visible_utf16_len(&html) <= limit);
            for chunk in &chunks {
                assert!(visible_utf16_len(chunk) <= limit, "chunk too long: {chunk:?}");
                assert!(validate(chunk).is_ok(), "{:?}", validate(chunk));
            }
            let joined: String = chunks.iter().map(|chunk| visible(chunk)).collect();
            assert_eq!(without_spaces(&joined), without_spaces(&visible(&html)));
        }
    }

    #[test]
    fn fuzz_sanitize_and_split() {
        const FRAGMENTS: &[&str] = &[
            "<",
            ">",
            "&",
            "<b>",
            "</b>",
            "<i>",
            "</i>",
            "<a href=\"https://x\">",
            "<a href='javascript:x'>",
            "</a>",
            "&amp;",
            "&nbsp;",
            "&#x1F600;",
            "&bogus;",
            "&#0;",
            "Ж",
            "😀",
            "\n\n",
            "\n",
            " ",
            "x",
            "\"",
            "'",
            "=",
            "/",
            "<pre><code class=\"language-rust\">",
            "</code></pre>",
            "<code>",
            "</code>",
            "<pre>",
            "</pre>",
            "<span class=\"tg-spoiler\">",
            "</span>",
            "<blockquote expandable>",
            "</blockquote>",
            "<tg-emoji emoji-id=\"1\">",
            "</tg-emoji>",
            "<p>",
            "</p>",
            "<br/>",
            "<script>",
            "<!--",
            "-->",
            "<a href=\"https://x?a=1&b=2\">",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..2000 {
            let count = rng.below(24);
            let input: String = (0..count).map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())]).collect();
            let once = sanitize(&input);
            assert_eq!(sanitize(&once), once, "not idempotent for {input:?}");
            if let Err(error) = validate(&once) {
                panic!("invalid output for {input:?}: {error}");
            }
            assert!(visible_utf16_len(&input) <= input.encode_utf16().count());
            assert_eq!(sanitized_utf16_len(&once), visible_utf16_len(&once), "quick length of {once:?}");
            let _ = to_plain_text(&input, true);
            let limit = 2 + round % 12;
            let chunks = split_for_telegram(&input, limit);
            for chunk in &chunks {
                assert!(visible_utf16_len(chunk) <= limit, "chunk {chunk:?} of {input:?}");
                if let Err(error) = validate(chunk) {
                    panic!("invalid chunk for {input:?}: {error}");
                }
            }
            let joined: String = chunks.iter().map(|chunk| visible(chunk)).collect();
            assert_eq!(without_spaces(&joined), without_spaces(&visible(&once)), "text lost for {input:?}");
        }
    }
}
