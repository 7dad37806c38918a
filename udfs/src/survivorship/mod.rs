//! Survivorship functions: aggregates that choose, per profile, which of the values its
//! records carry survives into the golden record.
//!
//! One SQL function per file. `latest`, `earliest` and `first_by_priority` keep the value
//! of the best-ranked row (by time, by source priority then time); they share their
//! ranking in `pick`, a group accumulator for many groups in `pick_groups` and the
//! order-preserving codes it stores values as in `codes`. `most_frequent` votes and
//! `collect_distinct` keeps every value; their group accumulator, in `count_groups`, counts
//! the values of every group. Each settles ties by the values themselves, so
//! that a result never depends on the order in which rows or partitions arrive. `tests`
//! runs them over many partitions and groups against answers computed row by row.

mod codes;
pub mod collect_distinct;
mod count_groups;
pub mod earliest;
pub mod first_by_priority;
pub mod latest;
pub mod most_frequent;
mod pick;
mod pick_groups;
#[cfg(test)]
mod tests;

pub use collect_distinct::CollectDistinctFunc;
pub use earliest::EarliestFunc;
pub use first_by_priority::FirstByPriorityFunc;
pub use latest::LatestFunc;
pub use most_frequent::MostFrequentFunc;
