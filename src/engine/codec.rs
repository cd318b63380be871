//! Callback-data codec: compact, engine-generated, always within Telegram's 64-byte limit, and
//! stamped with the session nonce so presses on outdated messages are recognised.

/// What a button does, as carried in its callback data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// The n-th static button of the step.
    Button(usize),
    /// The n-th generated list item (index into all items, not the page).
    Item(usize),
    /// Show page n of the list.
    Page(usize),
    /// Skip an optional input.
    Skip,
    /// Calendar: pick a day.
    Day { year: i32, month: u32, day: u32 },
    /// Calendar: show another month.
    Month { year: i32, month: u32 },
    /// Time picker: pick an hour (shows the minute grid).
    Hour(u32),
    /// Time picker: pick a full time.
    Time { hour: u32, minute: u32 },
    /// Time picker: back to the hour grid.
    Hours,
    /// A cell that does nothing (calendar headings, disabled days).
    Noop,
    /// A choice option.
    Choice(usize),
}

/// Decoded callback data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Callback {
    pub nonce: u32,
    pub press: Press,
}

/// Telegram's limit on callback data, in bytes.
pub const MAX_CALLBACK_BYTES: usize = 64;

/// Callback data as sent to Telegram: short ASCII kept inline (no heap allocation), because a
/// calendar carries fifty of them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CallbackData {
    len: u8,
    bytes: [u8; CallbackData::CAPACITY],
}

impl CallbackData {
    /// Enough for the longest encoding: 8 hex digits, a dot, a tag and 20 digits.
    const CAPACITY: usize = 32;

    fn new() -> Self {
        CallbackData { len: 0, bytes: [0; Self::CAPACITY] }
    }

    fn push(&mut self, byte: u8) {
        if (self.len as usize) < Self::CAPACITY {
            self.bytes[self.len as usize] = byte;
            self.len += 1;
        }
    }

    /// Callback data as Telegram hands it back (a mirrored chat): `None` for anything the
    /// engine could not have made (too long, not ASCII).
    pub fn from_wire(text: &str) -> Option<Self> {
        if text.len() > Self::CAPACITY || !text.is_ascii() {
            return None;
        }
        let mut data = CallbackData::new();
        text.bytes().for_each(|byte| data.push(byte));
        Some(data)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever pushed.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl std::ops::Deref for CallbackData {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for CallbackData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for CallbackData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for CallbackData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Encodes a press; the result is ASCII and at most 30 bytes long.
pub fn encode(nonce: u32, press: Press) -> CallbackData {
    let mut out = CallbackData::new();
    push_hex(&mut out, nonce);
    out.push(b'.');
    match press {
        Press::Button(n) => tagged(&mut out, b'b', n as u64, 1),
        Press::Item(n) => tagged(&mut out, b'i', n as u64, 1),
        Press::Page(n) => tagged(&mut out, b'p', n as u64, 1),
        Press::Choice(n) => tagged(&mut out, b'c', n as u64, 1),
        Press::Skip => out.push(b's'),
        Press::Noop => out.push(b'x'),
        Press::Hours => out.push(b'H'),
        Press::Day { year, month, day } => {
            tagged(&mut out, b'd', year.max(0) as u64, 4);
            push_decimal(&mut out, month as u64, 2);
            push_decimal(&mut out, day as u64, 2);
        }
        Press::Month { year, month } => {
            tagged(&mut out, b'm', year.max(0) as u64, 4);
            push_decimal(&mut out, month as u64, 2);
        }
        Press::Hour(h) => tagged(&mut out, b'h', h as u64, 1),
        Press::Time { hour, minute } => {
            tagged(&mut out, b't', hour as u64, 2);
            push_decimal(&mut out, minute as u64, 2);
        }
    }
    out
}

fn tagged(out: &mut CallbackData, tag: u8, n: u64, width: usize) {
    out.push(tag);
    push_decimal(out, n, width);
}

/// Appends `n` in decimal, zero-padded to `width` digits.
fn push_decimal(out: &mut CallbackData, n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut rest = n;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in len..width {
        out.push(b'0');
    }
    for digit in digits[..len].iter().rev() {
        out.push(*digit);
    }
}

/// Appends `n` in lowercase hexadecimal without padding.
fn push_hex(out: &mut CallbackData, n: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in (0..8).rev() {
        let nibble = ((n >> (shift * 4)) & 0xf) as usize;
        if nibble != 0 || started || shift == 0 {
            started = true;
            out.push(HEX[nibble]);
        }
    }
}

/// Decodes callback data; anything malformed or out of range is `None`.
pub fn decode(data: &str) -> Option<Callback> {
    if data.is_empty() || data.len() > MAX_CALLBACK_BYTES || !data.is_ascii() {
        return None;
    }
    let (nonce, body) = data.split_once('.')?;
    if nonce.is_empty() || nonce.len() > 8 {
        return None;
    }
    let nonce = u32::from_str_radix(nonce, 16).ok()?;
    let tag = body.chars().next()?;
    let rest = &body[1..];
    let number = |s: &str| -> Option<usize> {
        if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let press = match tag {
        'b' => Press::Button(number(rest)?),
        'i' => Press::Item(number(rest)?),
        'p' => Press::Page(number(rest)?),
        'c' => Press::Choice(number(rest)?),
        's' if rest.is_empty() => Press::Skip,
        'x' if rest.is_empty() => Press::Noop,
        'H' if rest.is_empty() => Press::Hours,
        'd' if rest.len() == 8 => {
            let (year, month, day) = (number(&rest[..4])?, number(&rest[4..6])?, number(&rest[6..])?);
            chrono::NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?;
            Press::Day { year: year as i32, month: month as u32, day: day as u32 }
        }
        'm' if rest.len() == 6 => {
            let (year, month) = (number(&rest[..4])?, number(&rest[4..])?);
            if !(1..=12).contains(&month) {
                return None;
            }
            Press::Month { year: year as i32, month: month as u32 }
        }
        'h' => {
            let hour = number(rest)?;
            if hour > 23 {
                return None;
            }
            Press::Hour(hour as u32)
        }
        't' if rest.len() == 4 => {
            let (hour, minute) = (number(&rest[..2])?, number(&rest[2..])?);
            if hour > 23 || minute > 59 {
                return None;
            }
            Press::Time { hour: hour as u32, minute: minute as u32 }
        }
        _ => return None,
    };
    Some(Callback { nonce, press })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_every_kind() {
        let presses = [
            Press::Button(0),
            Press::Item(123_456),
            Press::Page(7),
            Press::Skip,
            Press::Day { year: 2026, month: 2, day: 28 },
            Press::Month { year: 2027, month: 1 },
            Press::Hour(23),
            Press::Time { hour: 9, minute: 45 },
            Press::Hours,
            Press::Noop,
            Press::Choice(3),
        ];
        for press in presses {
            let data = encode(u32::MAX, press);
            assert!(data.len() <= MAX_CALLBACK_BYTES, "{data}");
            assert_eq!(decode(&data), Some(Callback { nonce: u32::MAX, press }));
            assert_eq!(decode(&data.to_string()), Some(Callback { nonce: u32::MAX, press }));
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "x",
            "1.",
            "1.q",
            "zz.b1",
            "1.d20260230",
            "1.m202613",
            "1.h24",
            "1.t2460",
            "1.b",
            "1.b-1",
            "1.s1",
            "é.b1",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn every_press_round_trips(nonce in any::<u32>(), n in 0usize..1_000_000, y in 0i32..9999, m in 1u32..=12, d in 1u32..=28, h in 0u32..24, mi in 0u32..60) {
            let presses = [
                Press::Button(n), Press::Item(n), Press::Page(n), Press::Choice(n),
                Press::Day { year: y, month: m, day: d }, Press::Month { year: y, month: m },
                Press::Hour(h), Press::Time { hour: h, minute: mi },
            ];
            for press in presses {
                let data = encode(nonce, press);
                prop_assert_eq!(data[..data.find('.').unwrap_or(0)].to_string(), format!("{nonce:x}"));
                prop_assert_eq!(decode(&data), Some(Callback { nonce, press }));
            }
        }

        #[test]
        fn decode_never_panics(data in ".{0,80}") {
            let _ = decode(&data);
        }

        #[test]
        fn encoded_data_fits(nonce in any::<u32>(), n in 0usize..1_000_000) {
            let data = encode(nonce, Press::Item(n));
            prop_assert!(data.len() <= MAX_CALLBACK_BYTES);
            prop_assert_eq!(decode(&data).map(|c| c.press), Some(Press::Item(n)));
        }
    }
}
