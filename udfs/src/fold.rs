//! Folding free text into matchable name tokens, shared by `normalize_name`, `name_root`
//! and the phonetic functions.
//!
//! The rules, applied character by character after Unicode NFC composition:
//! - letters and digits are lowercased and kept;
//! - a character whose compatibility decomposition (NFKD) starts with an ASCII letter or
//!   digit is folded to that ASCII text with its accents dropped (`é`→`e`, `ﬁ`→`fi`,
//!   full-width `Ａ`→`a`); a few Latin letters that NFKD leaves alone are folded by a small
//!   table (`ß`→`ss`, `æ`→`ae`, `ø`→`o`, `ł`→`l`, `đ`/`ð`→`d`, `þ`→`th`, `œ`→`oe`,
//!   `ı`→`i`, ...);
//! - letters of other scripts (Cyrillic, Greek, CJK, ...) are kept as they are, lowercased,
//!   with their diacritics: `й` is a letter of its own in Russian, not an accented `и`;
//! - apostrophes (`'`, `’`, `ʼ`, ...) are dropped, so `O'Brien` is one token `obrien`;
//! - everything else (spaces, hyphens, other punctuation, symbols, emoji) separates tokens,
//!   so `Jean-Luc` is two tokens `jean luc`. Tokens are joined by single spaces.

use unicode_normalization::char::{decompose_compatible, is_combining_mark};
use unicode_normalization::UnicodeNormalization;

/// Append the tokens of `input` to `out`, separated from what `out` already holds and from
/// each other by one space.
pub(crate) fn push_name_tokens(input: &str, out: &mut String) {
    let mut folder = Folder {
        need_space: !out.is_empty(),
        in_token: false,
        latin_base: false,
        out,
    };
    if input.is_ascii() {
        // The common case, and the cheap one: no composition, no decomposition.
        for c in input.chars() {
            folder.push_ascii(c);
        }
    } else {
        for c in input.nfc() {
            folder.push(c);
        }
    }
}

/// Folding state for one call of [`push_name_tokens`].
struct Folder<'o> {
    out: &'o mut String,
    /// A separator was seen since the last token character and `out` is not empty.
    need_space: bool,
    /// The last character handled was part of a token.
    in_token: bool,
    /// The current token's last letter was (folded to) ASCII, so a combining mark that
    /// follows it is an accent to drop rather than part of another script's letter.
    latin_base: bool,
}

impl Folder<'_> {
    fn emit(&mut self, c: char) {
        if self.need_space {
            self.out.push(' ');
            self.need_space = false;
        }
        self.out.push(c);
        self.in_token = true;
    }

    fn separate(&mut self) {
        self.need_space = !self.out.is_empty();
        self.in_token = false;
    }

    fn push_ascii(&mut self, c: char) {
        if c.is_ascii_alphanumeric() {
            self.emit(c.to_ascii_lowercase());
            self.latin_base = true;
        } else if !is_apostrophe(c) {
            self.separate();
        }
    }

    fn push(&mut self, c: char) {
        if c.is_ascii() {
            return self.push_ascii(c);
        }
        if is_apostrophe(c) {
            return;
        }
        for lower in c.to_lowercase() {
            self.push_lowercase(lower);
        }
    }

    fn push_lowercase(&mut self, c: char) {
        if c.is_ascii() {
            return self.push_ascii(c);
        }
        if is_combining_mark(c) {
            // A mark left after NFC (or made by lowercasing `İ`): an accent on a Latin
            // letter is dropped, a mark of another script's letter (a Devanagari vowel
            // sign, say) stays with it.
            if self.in_token && !self.latin_base {
                self.out.push(c);
            }
            return;
        }
        if let Some(folded) = fold_latin(c) {
            for f in folded.chars() {
                self.emit(f);
            }
            self.latin_base = true;
            return;
        }
        // The longest compatibility decomposition of one character is 18 characters.
        let mut parts = ['\0'; 18];
        let mut len = 0;
        decompose_compatible(c, |d| {
            if let Some(slot) = parts.get_mut(len) {
                *slot = d;
                len += 1;
            }
        });
        let parts = &parts[..len];
        if parts.first().is_some_and(|p| p.is_ascii_alphanumeric()) {
            for &p in parts {
                if p.is_ascii() {
                    self.push_ascii(p);
                } else if is_combining_mark(p) || is_apostrophe(p) {
                    // accents of the folded letter: dropped
                } else if p.is_alphanumeric() {
                    for lower in p.to_lowercase() {
                        self.emit(lower);
                    }
                    self.latin_base = false;
                } else {
                    self.separate();
                }
            }
        } else if c.is_alphanumeric() {
            self.emit(c);
            self.latin_base = false;
        } else {
            self.separate();
        }
    }
}

fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\'' | '`' | '\u{00B4}' | '\u{2018}' | '\u{2019}' | '\u{02BB}' | '\u{02BC}' | '\u{FF07}'
    )
}

/// Lowercase Latin letters that have no compatibility decomposition, and their ASCII.
fn fold_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' => "ss",
        'æ' => "ae",
        'ø' => "o",
        'ł' => "l",
        'đ' | 'ð' => "d",
        'þ' => "th",
        'œ' => "oe",
        'ı' => "i",
        'ħ' => "h",
        'ŧ' => "t",
        'ŋ' => "n",
        'ĸ' => "k",
        'ƒ' => "f",
        'ɨ' => "i",
        'ʉ' => "u",
        'ƀ' => "b",
        'ɗ' => "d",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(input: &str) -> String {
        let mut out = String::new();
        push_name_tokens(input, &mut out);
        out
    }

    #[test]
    fn ascii_is_lowercased_with_punctuation_as_separators() {
        assert_eq!(fold("  John   SMITH "), "john smith");
        assert_eq!(fold("Jean-Luc Picard"), "jean luc picard");
        assert_eq!(fold("O'Brien"), "obrien");
        assert_eq!(fold("J.R.R. Tolkien"), "j r r tolkien");
        assert_eq!(fold("Smith 3rd"), "smith 3rd");
        assert_eq!(fold("@@@"), "");
        assert_eq!(fold(""), "");
    }

    #[test]
    fn latin_letters_fold_to_ascii() {
        assert_eq!(fold("José Müller"), "jose muller");
        assert_eq!(fold("GRÜßE"), "grusse");
        assert_eq!(fold("Søren Kierkegaard"), "soren kierkegaard");
        assert_eq!(fold("Łukasz Żółć"), "lukasz zolc");
        assert_eq!(fold("Þór Æsa Œuvre Đorđe"), "thor aesa oeuvre dorde");
        assert_eq!(fold("ﬁona"), "fiona");
        assert_eq!(fold("ＡＢＣ"), "abc");
        assert_eq!(fold("İstanbul"), "istanbul");
        assert_eq!(fold("Nguyễn Thị"), "nguyen thi");
    }

    #[test]
    fn decomposed_input_folds_like_composed_input() {
        assert_eq!(fold("Jose\u{301}"), fold("José"));
        // n with diaeresis has no precomposed form: the mark is still an accent to drop.
        assert_eq!(fold("Spın\u{308}al Tap"), "spinal tap");
    }

    #[test]
    fn other_scripts_are_kept_lowercased() {
        assert_eq!(fold("Иван ЙОВАНОВИЧ"), "иван йованович");
        assert_eq!(fold("Άννα"), "άννα");
        assert_eq!(fold("山田 太郎"), "山田 太郎");
        assert_eq!(fold("किरण"), "किरण");
    }

    #[test]
    fn apostrophe_variants_join_and_symbols_separate() {
        assert_eq!(fold("D’Angelo"), "dangelo");
        assert_eq!(fold("Mc\u{02BC}Kay"), "mckay");
        assert_eq!(fold("Anna😀Lee"), "anna lee");
        assert_eq!(fold("😀🎉"), "");
        assert_eq!(fold("\u{301}\u{301}a"), "a");
    }

    #[test]
    fn appends_after_existing_content_with_one_space() {
        let mut out = String::from("first");
        push_name_tokens("  second ", &mut out);
        assert_eq!(out, "first second");
        push_name_tokens("", &mut out);
        assert_eq!(out, "first second");
    }

    #[test]
    fn long_and_odd_input_does_not_panic() {
        let long = "Ǆémile-ﷺ ".repeat(10_000);
        let folded = fold(&long);
        assert!(folded.starts_with("dzemile"));
        assert!(!folded.ends_with(' '));
        let controls: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let _ = fold(&controls);
    }
}
