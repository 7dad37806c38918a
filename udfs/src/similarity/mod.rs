//! Similarity functions: how alike two values are, for fuzzy matching of records whose
//! normalised values are not equal.
//!
//! One SQL function per file. `jaro_winkler` (character-level, for short strings such as
//! names) and `damerau_levenshtein` (an edit distance, for typos) come from `strsim`;
//! `token_jaccard` compares sets of words, for values whose words come in any order.

pub mod damerau_levenshtein;
pub mod jaro_winkler;
pub mod token_jaccard;

pub use damerau_levenshtein::DamerauLevenshteinFunc;
pub use jaro_winkler::JaroWinklerFunc;
pub use token_jaccard::TokenJaccardFunc;
