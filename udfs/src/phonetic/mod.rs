//! Phonetic functions: codes that spell alike names that sound alike, for blocking
//! (grouping candidate matches cheaply) and fuzzy matching.
//!
//! One SQL function per file, each wrapping an encoder of `rphonetic` (a port of Apache
//! Commons Codec). The encoders are written for ASCII letters (some slice strings by byte
//! and would panic inside a multi-byte character), so every input first goes through
//! [`encodable_letters`]: folded as `normalize_name` folds it (`Müller` → `muller`), then
//! reduced to its ASCII letters, uppercased, words run together as Commons Codec does.

pub mod double_metaphone;
pub mod nysiis;
pub mod soundex;

pub use double_metaphone::DoubleMetaphoneFunc;
pub use nysiis::NysiisFunc;
pub use soundex::SoundexFunc;

use crate::fold::push_name_tokens;

/// Put the ASCII letters of `input` (folded, uppercased) into `letters`; false when there
/// are none, which the functions return as NULL. `folded` is a reusable buffer.
pub(crate) fn encodable_letters(input: &str, folded: &mut String, letters: &mut String) -> bool {
    folded.clear();
    letters.clear();
    push_name_tokens(input, folded);
    letters.extend(
        folded
            .chars()
            .filter(char::is_ascii_alphabetic)
            .map(|c| c.to_ascii_uppercase()),
    );
    !letters.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_folded_ascii_uppercase_only() {
        let (mut folded, mut letters) = (String::new(), String::new());
        assert!(encodable_letters(
            "Müller-Lüdenscheidt 3rd",
            &mut folded,
            &mut letters
        ));
        assert_eq!(letters, "MULLERLUDENSCHEIDTRD");
        assert!(encodable_letters("O'Brien", &mut folded, &mut letters));
        assert_eq!(letters, "OBRIEN");
        for none in ["", "123", "@@@", "Иван", "😀", "山田"] {
            assert!(
                !encodable_letters(none, &mut folded, &mut letters),
                "{none:?}"
            );
        }
    }
}
