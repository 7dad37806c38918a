//! Normalisation functions: one canonical spelling per email address, phone number,
//! person's name and given name, so that records from different systems join on equality.
//!
//! `email.rs`, `phone.rs`, `name.rs` and `name_root.rs` hold one SQL function each;
//! `name_root` builds on `normalize_name` and the nickname table in `nicknames.rs`;
//! `phone_db.rs` gives each thread its own copy of the phone metadata. Each
//! function returns NULL for input that has no valid normal form, so a join on the
//! normalised value never matches two pieces of garbage.

pub mod email;
pub mod name;
pub mod name_root;
mod nicknames;
pub mod phone;
mod phone_db;

pub use email::NormalizeEmailFunc;
pub use name::NormalizeNameFunc;
pub use name_root::NameRootFunc;
pub use phone::NormalizePhoneFunc;
