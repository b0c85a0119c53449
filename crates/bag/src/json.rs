//! The fast path of `read_json_lines`: a serde `Deserializer` over one line
//! of UTF-8 text, for the common case.
//!
//! A line ends at `\n`, which is therefore not whitespace here (a document
//! that spans lines is no JSON line): [`from_line`] parses the document at
//! the start of a run of lines and tells where its line ends, so that the
//! reader need not look for the line's end first; [`from_str`] parses a
//! line already cut.
//!
//! Strings are borrowed from the line when they have no escapes, or
//! unescaped with serde_json's rules. Integers of up to 19 digits are parsed
//! here; any other number token (a fraction, an exponent, more digits, `-0`)
//! is handed to serde_json's own deserializer for that token, so it comes
//! out bit for bit as serde_json makes it, whatever serde_json features are
//! on. Anything else — byte strings, a map key that is not a plain string,
//! nesting near serde_json's limit, serde_json's raw values — and any error
//! at all, the record type's own included, makes it give up ([`Bail`]). The
//! caller then parses the line with serde_json, which gives the same record,
//! or the error with serde_json's message and column. So the fast path
//! changes speed, never records or messages: it accepts only what serde_json
//! accepts, and visits the record's `Deserialize` with the same calls
//! serde_json would make (a borrowed `str` for a string without escapes, a
//! plain one for an unescaped copy, `u64` for a non-negative integer, `i64`
//! for a negative one).
//!
//! Why it is faster than serde_json on the same line: no generic reader,
//! no position bookkeeping for messages (there are none), strings scanned
//! eight bytes at a time, integers of up to eight digits read from one
//! eight-byte word without a loop, no overflow checks for the first 19
//! digits.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt;

/// The fast path gave up: serde_json must parse this line.
#[derive(Debug)]
pub(crate) struct Bail;

impl fmt::Display for Bail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not handled by the fast JSON path")
    }
}

impl std::error::Error for Bail {}

impl de::Error for Bail {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Bail
    }
}

type R<T> = Result<T, Bail>;

/// serde_json's recursion limit; deeper documents go to serde_json, which
/// fails them.
const DEPTH: u32 = 120;

/// Parses `text`, one line, as one JSON document of type `T`, or gives up.
pub(crate) fn from_str<'de, T: de::Deserialize<'de>>(text: &'de str) -> R<T> {
    let mut de = Deserializer::new(text);
    let value = T::deserialize(&mut de)?;
    de.skip_ws();
    if de.pos == de.s.len() { Ok(value) } else { Err(Bail) }
}

/// Parses the line at the start of `text` (lines ending in `\n`) as one
/// JSON document of type `T`, or gives up: the record, and the length of
/// the line (the index of the `\n` that ends it, which must be there).
/// Whitespace before and after the document is part of the line.
pub(crate) fn from_line<'de, T: de::Deserialize<'de>>(text: &'de str) -> R<(T, usize)> {
    let mut de = Deserializer::new(text);
    let value = T::deserialize(&mut de)?;
    de.skip_ws();
    if de.peek() == Some(b'\n') {
        Ok((value, de.pos))
    } else {
        Err(Bail)
    }
}

struct Deserializer<'de> {
    s: &'de [u8],
    text: &'de str,
    pos: usize,
    depth: u32,
    /// The content of the last string with escapes, unescaped.
    scratch: Vec<u8>,
}

/// A string's content: borrowed from the line when it has no escapes (then
/// visited as borrowed, as serde_json does), else unescaped into the
/// deserializer's scratch space (visited as a plain `&str`, as serde_json
/// does).
enum Str<'de, 's> {
    Borrowed(&'de str),
    Copied(&'s str),
}

impl<'de> Str<'de, '_> {
    #[inline(always)]
    fn visit<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        match self {
            Str::Borrowed(s) => visitor.visit_borrowed_str(s),
            Str::Copied(s) => visitor.visit_str(s),
        }
    }
}

/// The value of four hexadecimal digits at `s[i..]`.
fn hex4(s: &[u8], i: usize) -> R<u32> {
    let digits = s.get(i..i + 4).ok_or(Bail)?;
    digits
        .iter()
        .try_fold(0u32, |v, &d| char::from(d).to_digit(16).map(|x| v * 16 + x))
        .ok_or(Bail)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The little-endian word of the eight bytes of `s` from `i`, if there are
/// eight (one load).
#[inline(always)]
fn word_at(s: &[u8], i: usize) -> Option<u64> {
    let bytes: &[u8; 8] = s.get(i..i.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(*bytes))
}

/// How many of the bytes of a little-endian word, from the lowest, are
/// ASCII digits before the first that is not (8 if all are).
#[inline(always)]
fn digit_run(w: u64) -> usize {
    // A byte's high bit after adding 0x46 (≥ 0x3a), after subtracting 0x30
    // (< 0x30), or in the byte itself (not ASCII) marks a non-digit. Carries
    // and borrows run upwards only, from a byte that is itself marked: the
    // lowest mark is exact.
    let marks = (w.wrapping_add(ONES * 0x46) | w.wrapping_sub(ONES * 0x30) | w) & HIGHS;
    (marks.trailing_zeros() / 8) as usize
}

/// The value of the first `n` (1 to 8) bytes of a little-endian word, all
/// ASCII digits (first digit in the lowest byte): three multiplications
/// (the method of simdjson's `parse_eight_digits_unrolled`, with the
/// digits moved to the top so that the missing ones are leading zeros).
#[inline(always)]
fn digits_value(w: u64, n: usize) -> u64 {
    // Bytes below `n` are exact after the subtraction (borrows run
    // upwards). (For `n = 0` the value is meaningless.)
    let w = w.wrapping_sub(ONES * 0x30) << ((8 * (8 - n) as u32) & 63);
    // Pairs of digits, then all eight; the products wrap by design, the
    // value is in the low 32 bits of the last shift.
    let w = w.wrapping_mul(10).wrapping_add(w >> 8);
    let w = (w & 0x0000_00FF_0000_00FF)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add(((w >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    w & 0xFFFF_FFFF
}

/// Bytes of `w` equal to `b`: their high bit set (exact for the lowest).
#[inline(always)]
fn has_byte(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * b as u64);
    x.wrapping_sub(ONES) & !x & HIGHS
}

impl<'de> Deserializer<'de> {
    #[inline(always)]
    fn new(text: &'de str) -> Self {
        Deserializer {
            s: text.as_bytes(),
            text,
            pos: 0,
            depth: 0,
            scratch: Vec::new(),
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Skips whitespace within the line (JSON's, but `\n`: the line's end).
    #[inline(always)]
    fn skip_ws(&mut self) {
        while let Some(&b) = self.s.get(self.pos) {
            if b == b' ' || b == b'\t' || b == b'\r' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next byte that is not whitespace (not consumed).
    #[inline(always)]
    fn next_token(&mut self) -> R<u8> {
        match self.s.get(self.pos) {
            Some(&b) if b > b' ' => Ok(b),
            _ => {
                self.skip_ws();
                self.peek().ok_or(Bail)
            }
        }
    }

    /// Before an element of an array or an entry of an object: `false` at
    /// its `close` byte (not consumed), else `true` after the `,` that must
    /// come before every element but the first.
    #[inline(always)]
    fn more(&mut self, first: &mut bool, close: u8) -> R<bool> {
        let b = self.next_token()?;
        if b == close {
            return Ok(false);
        }
        if *first {
            *first = false;
        } else if b == b',' {
            self.pos += 1;
        } else {
            return Err(Bail);
        }
        Ok(true)
    }

    #[inline(always)]
    fn expect(&mut self, b: u8) -> R<()> {
        if self.next_token()? == b {
            self.pos += 1;
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// A string's content after its opening quote (consumed); the closing
    /// quote is consumed.
    #[inline(always)]
    fn string_body(&mut self) -> R<Str<'de, '_>> {
        let start = self.pos;
        let s = self.s;
        let mut i = start;
        // Eight bytes at a time: a quote, a backslash or a control byte ends
        // the fast scan.
        while let Some(w) = word_at(s, i) {
            let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
            let stop = has_byte(w, b'"') | has_byte(w, b'\\') | control;
            if stop != 0 {
                i += (stop.trailing_zeros() / 8) as usize;
                return self.string_end(start, i);
            }
            i += 8;
        }
        while i < s.len() && s[i] != b'"' && s[i] != b'\\' && s[i] >= 0x20 {
            i += 1;
        }
        self.string_end(start, i)
    }

    #[inline(always)]
    fn string_end(&mut self, start: usize, i: usize) -> R<Str<'de, '_>> {
        match self.s.get(i) {
            Some(b'"') => {
                self.pos = i + 1;
                // Both ends are next to a quote, which is ASCII: they are
                // on character boundaries, the slice cannot fail. (Indexing,
                // which is inlined, where `get` was not.)
                Ok(Str::Borrowed(&self.text[start..i]))
            }
            Some(b'\\') => self.escaped(start, i),
            _ => Err(Bail),
        }
    }

    /// The rest of a string from its first escape at `i`, unescaped into
    /// the scratch space with serde_json's rules (a UTF-16 surrogate must
    /// come in a pair; anything doubtful gives up).
    #[cold]
    #[inline(never)]
    fn escaped(&mut self, start: usize, mut i: usize) -> R<Str<'de, '_>> {
        let s = self.s;
        self.scratch.clear();
        self.scratch.extend_from_slice(&s[start..i]);
        loop {
            match s.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    let c = *s.get(i + 1).ok_or(Bail)?;
                    i += 2;
                    let byte = match c {
                        b'"' | b'\\' | b'/' => c,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let high = hex4(s, i)?;
                            i += 4;
                            let code = match high {
                                0xD800..=0xDBFF => {
                                    if s.get(i..i + 2) != Some(b"\\u") {
                                        return Err(Bail);
                                    }
                                    let low = hex4(s, i + 2)?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return Err(Bail);
                                    }
                                    i += 6;
                                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return Err(Bail),
                                _ => high,
                            };
                            let ch = char::from_u32(code).ok_or(Bail)?;
                            self.scratch.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                            continue;
                        }
                        _ => return Err(Bail),
                    };
                    self.scratch.push(byte);
                }
                Some(&b) if b >= 0x20 => {
                    self.scratch.push(b);
                    i += 1;
                }
                _ => return Err(Bail),
            }
        }
        self.pos = i + 1;
        std::str::from_utf8(&self.scratch).map(Str::Copied).map_err(|_| Bail)
    }

    #[inline(always)]
    fn parse_str(&mut self) -> R<Str<'de, '_>> {
        self.expect(b'"')?;
        self.string_body()
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.s.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// A number token, visited as serde_json visits it: an integer of up to
    /// 19 digits here (non-negative as `u64`, negative as `i64`), any other
    /// token by serde_json itself (see [`number_by_serde_json`]).
    #[inline(always)]
    fn parse_number<V: Visitor<'de>>(&mut self, kind: Kind, visitor: V) -> R<V::Value> {
        let start = self.pos;
        let s = self.s;
        let negative = s.get(start) == Some(&b'-');
        let digits = start + negative as usize;
        // The eight bytes from the first digit; near the end of the text,
        // the last eight shifted down, zeros (not digits) coming in on top.
        let w = match word_at(s, digits) {
            Some(w) => w,
            None => match s.len().checked_sub(8).and_then(|last| word_at(s, last)) {
                Some(w) if digits < s.len() => w >> (8 * (digits + 8 - s.len())),
                _ => return self.parse_number_bytewise(start, negative, kind, visitor),
            },
        };
        let n = digit_run(w);
        let (v, end, next) = if n < 8 {
            // The whole integer and the byte after it are in `w`.
            (digits_value(w, n), digits + n, (w >> (8 * n)) as u8)
        } else {
            let mut v = digits_value(w, 8);
            let mut p = digits + 8;
            let mut next = 0u8;
            while let Some(&b) = s.get(p) {
                let d = b.wrapping_sub(b'0');
                if d > 9 {
                    next = b;
                    break;
                }
                v = v.wrapping_mul(10).wrapping_add(d as u64);
                p += 1;
            }
            (v, p, next)
        };
        let n = end - digits;
        let plain = n > 0
            && n <= 19
            && !(n > 1 && w as u8 == b'0')
            && !matches!(next, b'.' | b'e' | b'E')
            // `-0` is a float to serde_json; below i64::MIN too.
            && !(negative && (v == 0 || v > 1 << 63));
        if !plain {
            return self.number_by_serde_json(start, kind, visitor);
        }
        self.pos = end;
        visit_integer(v, negative, visitor)
    }

    /// [`parse_number`] near the end of the text, where fewer than eight
    /// bytes follow the sign.
    #[cold]
    #[inline(never)]
    fn parse_number_bytewise<V: Visitor<'de>>(
        &mut self,
        start: usize,
        negative: bool,
        kind: Kind,
        visitor: V,
    ) -> R<V::Value> {
        let s = self.s;
        let digits = start + negative as usize;
        let mut p = digits;
        let mut v: u64 = 0;
        while let Some(&b) = s.get(p) {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            v = v.wrapping_mul(10).wrapping_add(d as u64);
            p += 1;
        }
        let n = p - digits;
        // Fewer than eight digits here: no overflow, nor below i64::MIN.
        let leading_zero = n > 1 && s[digits] == b'0';
        let not_integer = matches!(s.get(p), Some(b'.' | b'e' | b'E'));
        if n == 0 || leading_zero || not_integer || (negative && v == 0) {
            return self.number_by_serde_json(start, kind, visitor);
        }
        self.pos = p;
        visit_integer(v, negative, visitor)
    }

    /// The number token starting at `start`, parsed by serde_json's own
    /// deserializer (which decides how a float rounds, or an integer that
    /// does not fit, and what is not a number at all).
    #[cold]
    fn number_by_serde_json<V: Visitor<'de>>(&mut self, start: usize, kind: Kind, visitor: V) -> R<V::Value> {
        let s = self.s;
        self.pos = start;
        while let Some(&b) = s.get(self.pos) {
            if b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let token = self.text.get(start..self.pos).ok_or(Bail)?;
        let mut de = serde_json::Deserializer::from_str(token);
        let value = match kind {
            Kind::Any => de::Deserializer::deserialize_any(&mut de, visitor),
            Kind::F32 => de::Deserializer::deserialize_f32(&mut de, visitor),
            Kind::Number => de::Deserializer::deserialize_f64(&mut de, visitor),
        }
        .map_err(|_| Bail)?;
        de.end().map_err(|_| Bail)?;
        Ok(value)
    }

    #[inline(always)]
    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > DEPTH { Err(Bail) } else { Ok(()) }
    }

    /// Skips one value, checking its syntax.
    fn skip_value(&mut self) -> R<()> {
        match self.next_token()? {
            b'"' => {
                self.pos += 1;
                self.string_body().map(drop)
            }
            b'{' => {
                self.pos += 1;
                self.enter()?;
                let mut first = true;
                while self.more(&mut first, b'}')? {
                    self.parse_str()?;
                    self.expect(b':')?;
                    self.skip_value()?;
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(())
            }
            b'[' => {
                self.pos += 1;
                self.enter()?;
                let mut first = true;
                while self.more(&mut first, b']')? {
                    self.skip_value()?;
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.parse_number(Kind::Any, de::IgnoredAny).map(drop),
            _ => Err(Bail),
        }
    }
}

/// Which of serde_json's number paths a number token takes: the one of
/// `deserialize_any` (which may keep a number's text, with serde_json's
/// `arbitrary_precision`), of `deserialize_f32` (which may round to `f32`
/// directly, with `float_roundtrip`), or of every other number type.
#[derive(Clone, Copy)]
enum Kind {
    Any,
    F32,
    Number,
}

macro_rules! forward_to_number {
    ($($name:ident: $kind:ident),*) => {$(
        #[inline]
        fn $name<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
            match self.next_token()? {
                b'-' | b'0'..=b'9' => self.parse_number(Kind::$kind, visitor),
                _ => Err(Bail),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Bail;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        match self.next_token()? {
            b'"' => {
                self.pos += 1;
                self.string_body()?.visit(visitor)
            }
            b'{' => self.deserialize_map(visitor),
            b'[' => self.deserialize_seq(visitor),
            b't' => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            b'-' | b'0'..=b'9' => self.parse_number(Kind::Any, visitor),
            _ => Err(Bail),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        match self.next_token()? {
            b't' => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            _ => Err(Bail),
        }
    }

    forward_to_number! {
        deserialize_i8: Number, deserialize_i16: Number, deserialize_i32: Number, deserialize_i64: Number,
        deserialize_u8: Number, deserialize_u16: Number, deserialize_u32: Number, deserialize_u64: Number,
        deserialize_f32: F32, deserialize_f64: Number
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.parse_str()?.visit(visitor)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, _visitor: V) -> R<V::Value> {
        Err(Bail)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, _visitor: V) -> R<V::Value> {
        Err(Bail)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        if self.next_token()? == b'n' {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        if self.next_token()? == b'n' {
            self.literal(b"null")?;
            visitor.visit_unit()
        } else {
            Err(Bail)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> R<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> R<V::Value> {
        // serde_json's raw values and arbitrary-precision numbers are
        // newtypes with private names: those are serde_json's to parse.
        if name.starts_with("$serde_json") {
            return Err(Bail);
        }
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.expect(b'[')?;
        self.enter()?;
        let value = visitor.visit_seq(Seq { de: self, first: true })?;
        self.expect(b']')?;
        self.depth -= 1;
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> R<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _name: &'static str, _len: usize, visitor: V) -> R<V::Value> {
        self.deserialize_seq(visitor)
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.expect(b'{')?;
        self.enter()?;
        let value = visitor.visit_map(Map { de: self, first: true })?;
        self.expect(b'}')?;
        self.depth -= 1;
        Ok(value)
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        // serde_json also takes a struct from an array of its fields.
        match self.next_token()? {
            b'{' => self.deserialize_map(visitor),
            b'[' => self.deserialize_seq(visitor),
            _ => Err(Bail),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        match self.next_token()? {
            b'"' => match self.parse_str()? {
                Str::Borrowed(s) => visitor.visit_enum(BorrowedStrDeserializer::new(s)),
                Str::Copied(s) => visitor.visit_enum(s.into_deserializer()),
            },
            b'{' => {
                self.pos += 1;
                self.enter()?;
                let value = visitor.visit_enum(Enum { de: self })?;
                self.expect(b'}')?;
                self.depth -= 1;
                Ok(value)
            }
            _ => Err(Bail),
        }
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.skip_value()?;
        visitor.visit_unit()
    }
}

struct Seq<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
}

impl<'de> de::SeqAccess<'de> for Seq<'_, 'de> {
    type Error = Bail;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> R<Option<T::Value>> {
        if !self.de.more(&mut self.first, b']')? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

struct Map<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
}

impl<'de> de::MapAccess<'de> for Map<'_, 'de> {
    type Error = Bail;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> R<Option<K::Value>> {
        if !self.de.more(&mut self.first, b'}')? {
            return Ok(None);
        }
        self.de.expect(b'"')?;
        let key = self.de.string_body()?;
        seed.deserialize(Key(key)).map(Some)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> R<V::Value> {
        self.de.expect(b':')?;
        seed.deserialize(&mut *self.de)
    }
}

/// A map key: a string; keys of other types (numbers parsed from the
/// string, as serde_json does) go to serde_json.
struct Key<'de, 's>(Str<'de, 's>);

impl<'de> de::Deserializer<'de> for Key<'de, '_> {
    type Error = Bail;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.0.visit(visitor)
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.0.visit(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.0.visit(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        self.0.visit(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_bool<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_char<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_option<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, _: usize, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], _: V) -> R<V::Value> {
        Err(Bail)
    }
    fn deserialize_enum<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], _: V) -> R<V::Value> {
        Err(Bail)
    }
}

/// `{"Variant": value}`: the variant's name, then its content.
struct Enum<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> de::EnumAccess<'de> for Enum<'_, 'de> {
    type Error = Bail;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> R<(V::Value, Self)> {
        let name = self.de.parse_str()?;
        let value = seed.deserialize(Key(name))?;
        self.de.expect(b':')?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for Enum<'_, 'de> {
    type Error = Bail;

    fn unit_variant(self) -> R<()> {
        de::Deserialize::deserialize(&mut *self.de)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> R<T::Value> {
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> R<V::Value> {
        de::Deserializer::deserialize_seq(&mut *self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> R<V::Value> {
        de::Deserializer::deserialize_struct(&mut *self.de, "", fields, visitor)
    }
}

/// Hands the magnitude `v` (at most 2⁶³ when `negative`) to `visitor`
/// as serde_json would: negative numbers as `i64`, others as `u64`.
fn visit_integer<'de, V: Visitor<'de>>(v: u64, negative: bool, visitor: V) -> R<V::Value> {
    if negative {
        visitor.visit_i64((v as i64).wrapping_neg())
    } else {
        visitor.visit_u64(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::Value;
    use std::collections::{BTreeMap, HashMap};

    #[derive(Debug, PartialEq, Deserialize)]
    struct Transaction {
        #[serde(rename = "transaction-id")]
        id: u64,
        amount: i64,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Account {
        id: u64,
        name: String,
        amount: i64,
        transactions: Vec<Transaction>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Rect { w: u32, h: u32 },
        Pair(i8, i8),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Misc {
        flag: bool,
        maybe: Option<u16>,
        ratio: f32,
        big: f64,
        letter: char,
        shape: Shape,
        tags: BTreeMap<String, Vec<i32>>,
        unit: (),
        tuple: (u8, String),
        #[serde(default)]
        missing: Option<String>,
    }

    /// The fast path either gives what serde_json gives, or gives up.
    fn agrees<T>(text: &str) -> bool
    where
        T: for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let slow = serde_json::from_str::<T>(text);
        match from_str::<T>(text) {
            Ok(fast) => {
                assert_eq!(Some(&fast), slow.as_ref().ok(), "{text}");
                true
            }
            Err(Bail) => false,
        }
    }

    #[test]
    fn typed_records_are_parsed_as_serde_json_parses_them() {
        let lines = [
            r#"{"id":0,"name":"Ingrid","amount":1171,"transactions":[{"transaction-id":953774649,"amount":4071}]}"#,
            r#"{"id":1,"name":"Yusuf","amount":-888,"transactions":[]}"#,
            r#" { "amount" : 5 , "transactions" : [ ] , "name" : "Zoë" , "id" : 18446744073709551615 , "x": [1, {"a": null}, "s", true, -2.5e-3] } "#,
            r#"[7, "as an array", 3, []]"#,
        ];
        for line in lines {
            assert!(agrees::<Account>(line), "the fast path gave up on {line}");
        }
        let misc = r#"{"flag":true,"maybe":null,"ratio":0.1,"big":1e300,"letter":"x","shape":{"Rect":{"w":2,"h":3}},"tags":{"a":[1,-2],"b":[]},"unit":null,"tuple":[255,"t"]}"#;
        assert!(agrees::<Misc>(misc));
        for shape in [
            r#""Dot""#,
            r#"{"Circle":2.5}"#,
            r#"{"Pair":[-1,1]}"#,
            r#"{"Rect":[4,5]}"#,
        ] {
            assert!(agrees::<Shape>(shape), "{shape}");
        }
    }

    #[test]
    fn numbers_come_out_bit_for_bit() {
        let tokens = [
            "0",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901234",
            "-0",
            "0.1",
            "2.2250738585072011e-308",
            "1.7976931348623157e308",
            "5e-324",
            "1E+2",
            "0.30000000000000004",
        ];
        for t in tokens {
            for text in [t.to_string(), format!("[{t}]"), format!("{{\"k\":{t}}}")] {
                let fast: Value = from_str(&text).unwrap_or_else(|_| panic!("gave up on {text}"));
                let slow: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(fast, slow, "{text}");
                assert_eq!(fast.to_string(), slow.to_string(), "{text}");
            }
            let (f, s) = (from_str::<f64>(t).ok(), serde_json::from_str::<f64>(t).ok());
            assert_eq!(f.map(f64::to_bits), s.map(f64::to_bits), "{t}");
            let (f, s) = (from_str::<f32>(t).ok(), serde_json::from_str::<f32>(t).ok());
            assert_eq!(f.map(f32::to_bits), s.map(f32::to_bits), "{t}");
            assert!(from_str::<i64>(t).ok() == serde_json::from_str::<i64>(t).ok() || from_str::<i64>(t).is_err());
            assert!(from_str::<u8>(t).ok() == serde_json::from_str::<u8>(t).ok() || from_str::<u8>(t).is_err());
        }
    }

    #[test]
    fn digits_are_counted_and_valued_a_word_at_a_time() {
        let digits = b"9081726354";
        for n in 0..=8 {
            for stop in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
                // `n` digits, a byte that is not one, then anything.
                let mut bytes = [stop; 8];
                bytes[..n].copy_from_slice(&digits[..n]);
                for (i, b) in bytes.iter_mut().enumerate().skip(n + 1) {
                    *b = (i as u8).wrapping_mul(37).wrapping_add(stop);
                }
                let w = u64::from_le_bytes(bytes);
                assert_eq!(digit_run(w), n, "{bytes:?}");
                if n > 0 {
                    let value: u64 = std::str::from_utf8(&digits[..n]).unwrap().parse().unwrap();
                    assert_eq!(digits_value(w, n), value, "{bytes:?}");
                }
            }
        }
        for x in [
            0u64, 1, 9, 10, 12_345_678, 99_999_999, 10_000_000, 90_807_060, 1_000_001,
        ] {
            let w = u64::from_le_bytes(format!("{x:08}").as_bytes().try_into().unwrap());
            assert_eq!((digit_run(w), digits_value(w, 8)), (8, x));
        }
    }

    #[test]
    fn integers_of_every_length_anywhere_in_the_line() {
        // Every length from 1 to 21 digits, with and without a sign, at the
        // end of the text (fewer than eight bytes after the first digit)
        // and inside it, and followed by a fraction or exponent.
        let mut x: u128 = 0;
        for d in 1..=21u128 {
            x = x * 10 + d % 10;
            for sign in ["", "-"] {
                for tail in ["", ".5", "e2", "E-1", "5"] {
                    let t = format!("{sign}{x}{tail}");
                    for text in [
                        t.clone(),
                        format!("[{t}]"),
                        format!("[{t}, 1]"),
                        format!("{{\"k\":{t}}}"),
                        format!("{{\"k\":{t},\"padding\":\"long enough\"}}"),
                        format!("  {t}  "),
                    ] {
                        let fast: Value = from_str(&text).unwrap_or_else(|_| panic!("gave up on {text}"));
                        let slow: Value = serde_json::from_str(&text).unwrap();
                        assert_eq!(fast.to_string(), slow.to_string(), "{text}");
                        for_each_integer_type_agrees(&text);
                    }
                }
            }
        }
        // Leading zeros and bare signs are left to serde_json (which fails them).
        for bad in ["01", "-01", "00", "-", "-a", "[01]", "[-]", "{\"k\":0123456789}"] {
            assert!(from_str::<Value>(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
    }

    /// The fast path gives serde_json's integer of each type, or gives up.
    fn for_each_integer_type_agrees(text: &str) {
        fn check<T: for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(text: &str) {
            if let Ok(fast) = from_str::<T>(text) {
                assert_eq!(Some(fast), serde_json::from_str::<T>(text).ok(), "{text}");
            }
        }
        check::<u64>(text);
        check::<i64>(text);
        check::<u8>(text);
        check::<i32>(text);
        check::<Vec<i64>>(text);
        check::<Vec<u64>>(text);
    }

    #[test]
    fn untyped_values_are_parsed_as_serde_json_parses_them() {
        let docs = [
            r#"{"a":[1,2,{"b":null,"c":[true,false]}],"d":"e","f":-3.25}"#,
            "[]",
            "{}",
            r#""just a string""#,
            "  42  ",
            r#"{"dup":1,"dup":2}"#,
            r#"{"ünï":"cødé ✓"}"#,
        ];
        for d in docs {
            assert!(agrees::<Value>(d), "{d}");
            assert!(agrees::<HashMap<String, Value>>(d) || !d.starts_with('{'), "{d}");
        }
    }

    #[test]
    fn what_serde_json_refuses_is_never_accepted() {
        // Each is invalid JSON, or not the type: the fast path must give up
        // (and serde_json then names the error).
        let bad = [
            "",
            "   ",
            "{",
            "}",
            r#"{"id":1,}"#,
            r#"{"id":1 "name":"x"}"#,
            r#"{"id":01,"name":"x","amount":1,"transactions":[]}"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[]} x"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[],}"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[1]}"#,
            r#"{"id":-1,"name":"x","amount":1,"transactions":[]}"#,
            r#"{"id":1.5,"name":"x","amount":1,"transactions":[]}"#,
            r#"{"id":1,"name":"x","amount":1}"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[],"id":2}"#,
            r#"{"id":1,"name":x,"amount":1,"transactions":[]}"#,
            "{\"id\":1,\"name\":\"a\ttab\",\"amount\":1,\"transactions\":[]}",
            r#"{"id":1,"name":"x","amount":-,"transactions":[]}"#,
            r#"{"id":1,"name":"x","amount":1.,"transactions":[]}"#,
            r#"{"id":1,"name":"x","amount":1e,"transactions":[]}"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[],"extra":tru}"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[],"extra":[1,]}"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[],"extra":{"a" 1}}"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[],"extra":"\q"}"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[],"extra":1.2.3}"#,
            r#"{"id":1,"name":"x","amount":1,"transactions":[],"extra":--1}"#,
            r#"[1,"x",2]"#,
            r#"[1,"x",2,[],5]"#,
        ];
        for line in bad {
            assert!(
                serde_json::from_str::<Account>(line).is_err(),
                "serde_json accepts {line}"
            );
            assert!(from_str::<Account>(line).is_err(), "the fast path accepts {line}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(from_str::<Value>(&deep).is_err());
        assert!(serde_json::from_str::<Value>(&deep).is_err());
    }

    #[test]
    fn escapes_are_unescaped_as_serde_json_unescapes_them() {
        let lines = [
            r#"{"id":1,"name":"say \"hi\" \u00e9 \\ \/ \b\f\n\r\t","amount":1,"transactions":[]}"#,
            r#"{"id":1,"name":"\ud83d\ude00 and \u0000 and \uFFFF","amount":1,"transactions":[]}"#,
            r#"{"i\u0064":1,"name":"x","amo\u0075nt":1,"transactions":[],"ign\"ored":"a\nb"}"#,
        ];
        for line in lines {
            assert!(agrees::<Account>(line), "the fast path gave up on {line}");
            assert!(agrees::<Value>(line), "the fast path gave up on {line}");
        }
        assert!(agrees::<Shape>(r#""D\u006ft""#));
        assert!(agrees::<Shape>(r#"{"Circl\u0065":1.5}"#));
        // serde_json refuses these; so must the fast path.
        for bad in [
            r#""\ud83d""#,
            r#""\ud83d\u0041""#,
            r#""\ude00""#,
            r#""\u12G4""#,
            r#""\u12""#,
            r#""\x41""#,
            "\"tab\\\t\"",
            r#""unterminated\""#,
        ] {
            assert!(serde_json::from_str::<String>(bad).is_err(), "serde_json accepts {bad}");
            assert!(from_str::<String>(bad).is_err(), "the fast path accepts {bad}");
        }
    }

    #[test]
    fn every_one_byte_change_of_a_line_is_parsed_as_serde_json_parses_it_or_left_to_it() {
        let lines = [
            r#"{"id":12,"name":"Zoë \"Z\" \ud83d\ude00","amount":-1234567890,"transactions":[{"transaction-id":953774649,"amount":40.5e1}]}"#,
            r#"[3,"a",-0,[{"transaction-id":1,"amount":2}],null,true,false,{}]"#,
        ];
        let swaps = b"{}[]\",:0-.eE+ \t\\u/x1\x01\x7f";
        for line in lines {
            let bytes = line.as_bytes();
            let mut variants: Vec<Vec<u8>> = Vec::new();
            for i in 0..bytes.len() {
                let mut cut = bytes.to_vec();
                cut.remove(i);
                variants.push(cut);
                for &b in swaps {
                    let mut changed = bytes.to_vec();
                    changed[i] = b;
                    variants.push(changed.clone());
                    changed.insert(i, b);
                    variants.push(changed);
                }
            }
            for v in &variants {
                // The reader hands the parsers UTF-8 only.
                if let Ok(text) = std::str::from_utf8(v) {
                    agrees::<Value>(text);
                    agrees::<Account>(text);
                    agrees::<(u64, String, i8, Vec<Transaction>, Option<u8>, bool, bool, Value)>(text);
                    // Parsed to the end of its line, followed by more lines: the
                    // same record, and the line's length.
                    let lines = format!("{text}\n{{\"next\":1}}\n");
                    let whole = from_str::<Value>(text).ok().map(|v| (v, text.len()));
                    assert_eq!(from_line::<Value>(&lines).ok(), whole, "{text}");
                }
            }
        }
    }

    #[test]
    fn a_line_ends_at_its_newline() {
        let good = [
            ("{\"a\":1}\n", 7),
            ("  [1, 2] \t\r\n[3]\n", 11),
            ("12345\n6", 5),
            ("-7\n", 2),
            ("\"s\"\r\r\nx", 5),
        ];
        for (text, len) in good {
            let (value, n) = from_line::<Value>(text).unwrap_or_else(|_| panic!("gave up on {text:?}"));
            assert_eq!(n, len, "{text:?}");
            assert_eq!(value, serde_json::from_str::<Value>(&text[..n]).unwrap(), "{text:?}");
        }
        // No line end, a document over two lines, a blank line, a newline
        // inside a string, something after the document: left to the
        // reader (which cuts the line and parses it alone).
        for bad in [
            "{\"a\":1}",
            "{\"a\":\n1}\n",
            "\n",
            "  \n",
            "\"a\nb\"\n",
            "1 2\n",
            "[1]x\n",
        ] {
            assert!(from_line::<Value>(bad).is_err(), "{bad:?}");
        }
        assert!(from_str::<Value>("[1,\n2]").is_err());
    }

    #[test]
    fn byte_strings_are_left_to_serde_json() {
        assert!(from_str::<serde_bytes_like::Bytes>(r#""abc""#).is_err());
        assert!(serde_json::from_str::<serde_bytes_like::Bytes>(r#""abc""#).is_ok());
    }

    /// A type that asks for bytes.
    mod serde_bytes_like {
        #[derive(Debug, PartialEq)]
        pub(super) struct Bytes;

        impl<'de> serde::Deserialize<'de> for Bytes {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Bytes;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, _: &[u8]) -> Result<Bytes, E> {
                        Ok(Bytes)
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }
}
